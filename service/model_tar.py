"""A sharded checkpoint uploaded as one plain tar (stream, issue 14): unpacked beside the other parts.

Only regular files named like a Hugging Face shard or index (at the top or in one folder) are taken; any
other member (links, devices, other names, deeper paths) refuses the upload. Member names are checked
against the same patterns as multi-part uploads and only their last component is used, so nothing from
the archive chooses a path. Compressed tars are refused: their content could exceed the upload cap that
bounded the archive.
"""

from __future__ import annotations

import re
import shutil
import tarfile
from pathlib import Path, PurePosixPath

from service.errors import InvalidSubmission
from service.schemas import FieldError


def _refuse(message: str) -> InvalidSubmission:
    return InvalidSubmission(f"model: {message}", [FieldError(field="model", message=message)])


def unpack_model_tar(
    archive: Path, index_part: re.Pattern[str], shard_part: re.Pattern[str], max_members: int
) -> dict[str, Path]:
    """Extract `archive` into its folder; returns role -> path (`model` = the index, `model/<name>`)."""
    roles: dict[str, Path] = {}
    folder = archive.parent
    try:
        with tarfile.open(archive, mode="r:") as tar:
            for member in tar:
                if member.isdir():
                    continue
                parts = PurePosixPath(member.name).parts
                name = parts[-1] if parts else ""
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
                source = tar.extractfile(member)
                assert source is not None
                target = folder / name
                with source, target.open("xb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
                roles[role] = target
    except tarfile.TarError as exc:
        raise _refuse(f"not a readable plain tar ({exc})") from exc
    except FileExistsError as exc:
        raise _refuse(f"tar member {Path(str(exc.filename)).name!r} clashes with another part") from exc
    if "model" not in roles:
        raise _refuse("the tar holds no *.safetensors.index.json")
    archive.unlink()
    return roles
