"""Streams a multipart upload to disk with a byte cap: nothing is held whole in memory, and a body over the
limit is refused while it arrives (Starlette itself caps nothing).

Only known parts are accepted: the files `model`, `spec_file`, `data`, the extra inputs the registered
compression methods take (e.g. `teacher`; `compression_core.methods.upload_roles()`) and the fields `spec`,
`queue`. File names from the client never become paths: each part is stored as `<role><suffix>`, the suffix
taken from an allow-list.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING

import anyio
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from compression_core.methods import upload_roles
from service.errors import InvalidSubmission, NotAStateDict, PayloadTooLarge
from service.schemas import FieldError

if TYPE_CHECKING:
    from starlette.requests import Request

    from mcs_common.settings import Settings
    from service.auth import Principal

# stream (issue 14): a sharded checkpoint is several `model` parts named as in the Hugging Face layout
# (`model-00001-of-00003.safetensors` ..., `model.safetensors.index.json`); only these exact name shapes are
# accepted, stored under their own names beside each other (the index refers to them), as roles
# `model/<name>`; `model` itself is the index.
SHARD_PART = re.compile(r"^[A-Za-z0-9_]{1,64}(-[A-Za-z0-9_]{1,32})?-\d{5}-of-\d{5}\.safetensors$")
INDEX_PART = re.compile(r"^[A-Za-z0-9_]{1,64}\.safetensors\.index\.json$")
MAX_SHARD_PARTS = 4096
FIELD_PARTS = ("spec", "queue")
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
GRAPH_SUFFIXES = (".onnx",)  # a model source of its own (compression_core/sources/onnx/), weights inside
_SAFE_SUFFIX = re.compile(r"^\.[a-z0-9]{1,12}$")


def file_parts() -> tuple[str, ...]:
    """The file parts a submission may carry, from the method registry (a method's inputs are state dicts)."""
    roles = upload_roles()
    return (roles[0], "spec_file", *roles[1:])


def state_dict_roles() -> tuple[str, ...]:
    """The file parts that hold state dicts: the model and every method's extra input (e.g. `teacher`)."""
    return tuple(r for r in upload_roles() if r != "data")


@dataclass
class StagedUpload:
    """A parsed upload waiting in its own staging folder until it becomes a job's inputs."""

    directory: Path
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)  # role -> SHA-256 of the bytes received

    def discard(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def _shard_role(name: str, filename: str, parts: int) -> str | None:
    """`model` for an index part, `model/<file name>` for a shard, None for any other part."""
    if name != "model":
        return None
    if INDEX_PART.match(filename):
        return "model"
    if not SHARD_PART.match(filename):
        return None
    if parts >= MAX_SHARD_PARTS:
        raise InvalidSubmission(f"more than {MAX_SHARD_PARTS} model parts")
    return f"model/{filename}"


def check_shards(staged: StagedUpload) -> None:
    """Shards come with their index, and an index with its shards (a plain `model` file stands alone)."""
    shards = [role for role in staged.files if role.startswith("model/")]
    index = staged.files.get("model")
    if shards and (index is None or not INDEX_PART.match(index.name)):
        raise InvalidSubmission(
            "model shards need their index: add a `model` part named like model.safetensors.index.json",
            [FieldError(field="model", message="index missing")],
        )


def _suffix_for(role: str, filename: str) -> str:
    """The stored suffix: state dicts become `.safetensors` or `.pth` (what the safe loader dispatches on).

    A state dict named with another extension is refused; one with no extension at all (e.g. `curl -F
    model=@-`) is stored as `.safetensors` or `.pth` according to its first bytes."""
    suffix = PurePosixPath(filename.replace("\\", "/")).suffix.lower()
    if role in state_dict_roles():
        if role == "model" and suffix == ".tar":  # stream (issue 14): a sharded checkpoint in one tar
            return suffix
        if suffix == ".safetensors":
            return suffix
        if suffix in TORCH_SUFFIXES:
            return ".pth"
        if suffix in GRAPH_SUFFIXES:
            return suffix
        if suffix:
            raise NotAStateDict(
                f"{role}: unsupported file extension {suffix!r}; send .safetensors (preferred), a "
                f"PyTorch file ({', '.join(TORCH_SUFFIXES)}) or an ONNX graph (.onnx)",
                [FieldError(field=role, message=f"extension {suffix!r}")],
            )
        return ""  # decided from the first bytes
    if role == "spec_file":
        return ".json"
    return suffix if _SAFE_SUFFIX.match(suffix) else ".dat"


class _Receiver:
    """python-multipart callbacks: route each part to a file or a small in-memory field."""

    def __init__(self, directory: Path, max_field_bytes: int) -> None:
        self.directory = directory
        self.max_field_bytes = max_field_bytes
        self.staged = StagedUpload(directory)
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._name = ""
        self._file: IO[bytes] | None = None
        self._digest = hashlib.sha256()
        self._field = bytearray()
        self._head = b""
        self._file_bytes = 0
        self.pending: list[bytes] = []  # file bytes parsed from the last chunk, written by the caller

    def on_part_begin(self) -> None:
        self._disposition, self._file, self._field = b"", None, bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name, self._header_value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in options:
            parts = file_parts()
            if name not in parts:
                raise InvalidSubmission(
                    f"unexpected file part {name!r}; expected one of {', '.join(parts)}",
                )
            filename = options[b"filename"].decode("utf-8", "replace")
            shard = _shard_role(name, filename, len(self.staged.files))  # stream (issue 14)
            if shard is not None:
                name, path = shard, self.directory / filename
            else:
                path = self.directory / f"{name}{_suffix_for(name, filename)}"
            if name in self.staged.files:
                raise InvalidSubmission(f"file part {name!r} given twice")
            self.staged.files[name] = path
            self._file = path.open("wb")
            self._digest = hashlib.sha256()
            self._head = b""
            self._file_bytes = 0
        elif name not in FIELD_PARTS:
            raise InvalidSubmission(
                f"unexpected form field {name!r}; expected one of {', '.join(FIELD_PARTS)}"
            )
        self._name = name

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            self._file_bytes += end - start
            if self._name == "spec_file" and self._file_bytes > self.max_field_bytes:
                raise PayloadTooLarge(f"file part 'spec_file' is over {self.max_field_bytes} bytes")
            self.pending.append(bytes(data[start:end]))
            if len(self._head) < 2:
                self._head += data[start : start + 2]
            return
        if len(self._field) + (end - start) > self.max_field_bytes:
            raise PayloadTooLarge(f"form field {self._name!r} is over {self.max_field_bytes} bytes")
        self._field += data[start:end]

    def flush(self) -> None:
        if self._file is not None and self.pending:
            for chunk in self.pending:
                self._digest.update(chunk)
            self._file.writelines(self.pending)
        self.pending.clear()

    def on_part_end(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None
            self.staged.digests[self._name] = self._digest.hexdigest()
            path = self.staged.files[self._name]
            if not path.suffix:  # unknown name: a zip or pickle is a torch file, anything else safetensors
                suffix = ".pth" if self._head[:2] == b"PK" or self._head[:1] == b"\x80" else ".safetensors"
                self.staged.files[self._name] = path.rename(path.with_suffix(suffix))
        else:
            self.staged.fields[self._name] = self._field.decode("utf-8", "replace")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


STALE_STAGING_S = 6 * 3600  # an upload folder untouched this long belongs to a request that is gone


def remove_stale_staging(staging_root: Path, max_age_s: float = STALE_STAGING_S) -> int:
    """Remove upload folders left by requests that died (e.g. a killed API); a folder counts as stale
    when neither it nor any file in it changed for `max_age_s`. Returns how many were removed."""
    import time

    removed, cutoff = 0, time.time() - max_age_s
    if not staging_root.is_dir():
        return 0
    for folder in staging_root.iterdir():
        try:
            times = [folder.lstat().st_mtime, *(p.lstat().st_mtime for p in folder.iterdir())]
        except OSError:
            continue
        if max(times) < cutoff:
            shutil.rmtree(folder, ignore_errors=True) if folder.is_dir() else folder.unlink(missing_ok=True)
            removed += 1
    return removed


async def stream_upload(
    content_type: str,
    stream: AsyncIterator[bytes],
    staging_root: Path,
    *,
    max_bytes: int,
    max_field_bytes: int,
    limit_name: str = "MCS_MAX_UPLOAD_BYTES",
) -> StagedUpload:
    """Parse a multipart body chunk by chunk into a fresh folder under `staging_root`.

    Raises PayloadTooLarge as soon as more than `max_bytes` have arrived, InvalidSubmission on a malformed
    body or an unknown part; the staging folder is removed on any error.
    """
    mime, params = parse_options_header(content_type)
    if mime != b"multipart/form-data" or b"boundary" not in params:
        raise InvalidSubmission("the body must be multipart/form-data with a boundary")
    directory = staging_root / uuid.uuid4().hex
    directory.mkdir(parents=True)
    receiver = _Receiver(directory, max_field_bytes)
    callbacks = {
        name: getattr(receiver, name)
        for name in (
            "on_part_begin",
            "on_part_data",
            "on_part_end",
            "on_header_field",
            "on_header_value",
            "on_header_end",
            "on_headers_finished",
        )
    }
    parser = MultipartParser(params[b"boundary"], callbacks)  # type: ignore[arg-type]
    received = 0
    try:
        async for chunk in stream:
            received += len(chunk)
            if received > max_bytes:
                raise PayloadTooLarge(f"the upload is over the limit {limit_name}={max_bytes} bytes")
            parser.write(chunk)
            if receiver.pending:
                await anyio.to_thread.run_sync(receiver.flush)
        parser.finalize()
        model = receiver.staged.files.get("model")
        tar = model is not None and model.suffix == ".tar"  # stream (issue 14): unpack_tar, after the limits
        if tar and any(role.startswith("model/") for role in receiver.staged.files):
            raise InvalidSubmission("send a sharded model as one tar or as parts, not both")
        check_shards(receiver.staged)  # stream (issue 14)
    except FormParserError as exc:
        receiver.close()
        receiver.staged.discard()
        raise InvalidSubmission(f"malformed multipart body: {exc}") from exc
    except BaseException:
        receiver.close()
        receiver.staged.discard()
        raise
    receiver.close()
    return receiver.staged


def unpack_tar(staged: StagedUpload, max_bytes: int, limit_name: str) -> None:
    """A `model` sent as one tar becomes its index and shards (stream, issue 14), writing at most
    `max_bytes`. Called once the caller's limits passed: nothing is extracted for a request refused."""
    from service.model_tar import unpack_model_tar

    model = staged.files.get("model")
    if model is None or model.suffix != ".tar":
        return
    from compression_core.sources.hf.checkpoint import is_checkpoint

    if is_checkpoint(model):  # a Hugging Face checkpoint (issue 23): read in place, extracted by the worker
        return
    roles = unpack_model_tar(
        model, INDEX_PART, SHARD_PART, MAX_SHARD_PARTS, max_bytes=max_bytes, limit_name=limit_name
    )
    staged.files.update(roles)


def byte_limit(settings: Settings, principal: Principal) -> tuple[int, str]:
    """The bytes one submission may store and the limit's name: the deployment's, or the token's when
    lower."""
    limit, name = settings.max_upload_bytes, "MCS_MAX_UPLOAD_BYTES"
    if principal.max_upload_bytes is not None and principal.max_upload_bytes < limit:
        limit, name = principal.max_upload_bytes, f"max_upload_bytes of token {principal.name!r}"
    return limit, name


def upload_limit(request: Request, settings: Settings, principal: Principal) -> tuple[int, str]:
    """The byte limit of this request's upload and its name (the deployment's, or the token's when lower);
    a declared Content-Length over it is refused before a byte is read."""
    limit, name = byte_limit(settings, principal)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the upload ({declared} bytes) is over the limit {name}={limit} bytes")
    return limit, name


async def receive_upload(request: Request, settings: Settings, limit: int, name: str) -> StagedUpload:
    """Stream the request's multipart body into a staging folder, counting bytes against `limit`."""
    return await stream_upload(
        request.headers.get("content-type", ""),
        request.stream(),
        settings.staging_dir,
        max_bytes=limit,
        max_field_bytes=settings.max_field_bytes,
        limit_name=name,
    )
