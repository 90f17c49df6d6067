"""A sharded checkpoint uploaded as one plain tar (stream, issue 14): unpacked beside the other parts.

Only regular files named like a Hugging Face shard or index (at the top or in one folder) are taken; any
other member (links, devices, other names, deeper paths) refuses the upload. Member names are checked
against the same patterns as multi-part uploads and only their last component is used, so nothing from
the archive chooses a path. Compressed tars are refused: their content could exceed the upload cap that
bounded the archive. Sparse members (GNU 'S', PAX 0.x/1.0) are refused too: `tarfile` expands them, filling
the holes, so 10 kB of tar could write gigabytes (issue 21, item 1). What is extracted is counted against
the caller's upload limit while it is written, and a member that would not fit the free disk is refused
before it is written. The caller extracts only after the token's limits passed (service.jobs.create_job).
"""

from __future__ import annotations

import re
import shutil
import tarfile
from pathlib import Path, PurePosixPath
from typing import IO

from service.errors import InvalidSubmission, PayloadTooLarge, StorageFull
from service.schemas import FieldError

DISK_RESERVE_BYTES = 256 << 20  # free space an extraction leaves to everything else on the volume


def _refuse(message: str) -> InvalidSubmission:
    return InvalidSubmission(f"model: {message}", [FieldError(field="model", message=message)])


def _copy_bounded(source: IO[bytes], out: IO[bytes], room: int, limit_name: str, limit: int) -> int:
    """Copy at most `room` bytes; PayloadTooLarge as soon as the member holds more."""
    copied = 0
    while chunk := source.read(1 << 20):
        copied += len(chunk)
        if copied > room:
            raise PayloadTooLarge(f"the tar's contents are over the limit {limit_name}={limit} bytes")
        out.write(chunk)
    return copied


def unpack_model_tar(
    archive: Path,
    index_part: re.Pattern[str],
    shard_part: re.Pattern[str],
    max_members: int,
    *,
    max_bytes: int,
    limit_name: str = "MCS_MAX_UPLOAD_BYTES",
) -> dict[str, Path]:
    """Extract `archive` into its folder, writing at most `max_bytes` in all; returns role -> path (`model`
    = the index, `model/<name>`)."""
    roles: dict[str, Path] = {}
    folder = archive.parent
    written = 0
    try:
        with tarfile.open(archive, mode="r:") as tar:
            for member in tar:
                if member.isdir():
                    continue
                parts = PurePosixPath(member.name).parts
                name = parts[-1] if parts else ""
                if member.issparse():  # tarfile would write its holes as zeros: member.size bytes
                    raise _refuse(
                        f"tar member {name[:100]!r} is a sparse file ({member.size} bytes once expanded); "
                        "send shards as regular files"
                    )
                if not member.isreg() or len(parts) > 2 or ".." in parts:
                    raise _refuse(f"tar member {member.name[:100]!r} is not a plain shard or index file")
                if index_part.match(name):
                    role = "model"
                elif shard_part.match(name):
                    role = f"model/{name}"
                else:
                    raise _refuse(f"tar member {name[:100]!r} is not named like a shard or an index")
                if role in roles:
                    raise _refuse(f"tar holds {name!r} twice" if role != "model" else "tar holds two indexes")
                if len(roles) >= max_members:
                    raise _refuse(f"tar holds more than {max_members} files")
                if written + member.size > max_bytes:
                    raise PayloadTooLarge(
                        f"the tar's contents are over the limit {limit_name}={max_bytes} bytes"
                    )
                if member.size > shutil.disk_usage(folder).free - DISK_RESERVE_BYTES:
                    raise StorageFull("the server's storage is full; nothing was queued, try again later")
                source = tar.extractfile(member)
                assert source is not None
                target = folder / name
                with source, target.open("xb") as out:
                    written += _copy_bounded(source, out, max_bytes - written, limit_name, max_bytes)
                roles[role] = target
    except tarfile.TarError as exc:
        raise _refuse(f"not a readable plain tar ({exc})") from exc
    except FileExistsError as exc:
        raise _refuse(f"tar member {Path(str(exc.filename)).name!r} clashes with another part") from exc
    if "model" not in roles:
        raise _refuse("the tar holds no *.safetensors.index.json")
    archive.unlink()
    return roles
