"""Cheap structural checks on an uploaded state-dict file before any loader reads it.

A `.pth` is a zip archive that `torch.save` writes with stored (uncompressed) members, so no member can
honestly be larger than the archive. A member that claims more (e.g. a data record of 100 GB in a 1 kB
file) or that is compressed is a forged or foreign archive: refusing it here means no loader is ever asked
to size a buffer from a number the client chose.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

MAX_MEMBERS = 100_000  # a state dict with more tensors than this is not a model we can serve


def precheck_state_dict_file(path: Path) -> str | None:
    """A reason to refuse the file, or None when the loader may read it."""
    size = path.stat().st_size
    if size == 0:
        return "the file is empty"
    with path.open("rb") as handle:
        head = handle.read(4)
    if head[:2] != b"PK":
        return None  # a legacy pickle or safetensors: their loaders check sizes against the file
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        return f"a corrupted or truncated zip archive ({exc})"
    if len(members) > MAX_MEMBERS:
        return f"the archive has {len(members)} members (at most {MAX_MEMBERS})"
    for member in members:
        if member.compress_type != zipfile.ZIP_STORED:
            return f"archive member {member.filename!r} is compressed; torch.save never compresses members"
        if member.file_size > size or member.compress_size > size or member.header_offset > size:
            return (
                f"archive member {member.filename!r} claims {member.file_size} bytes, but the whole file "
                f"has {size}: a forged archive"
            )
    return None
