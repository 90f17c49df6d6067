"""What a state-dict file holds, read from its metadata alone: names, dtypes, shapes and byte extents.

Uploads are untrusted, and a small file can describe a huge model: a `.pth` tensor may be a stride-0 view of
a 16-byte storage shaped (16384, 16384), which `.contiguous()` turns into 1 GiB. So nothing is loaded until
this module has checked, from the safetensors header or the `.pth` pickle rebuilt on the meta device (no
tensor bytes are read), that

- every tensor has a dtype the library compresses (float8, uint16/32/64 and complex are named and refused);
- every tensor's bytes lie inside bytes the file stores: its view fits its storage, the storage is exactly
  the zip record the file holds for it, no stride is zero and no two elements or tensors share bytes;
  hence the dense tensors together never need more bytes than the file has.

The API calls this at submission (memory O(header)); `load_state_dict` calls it before loading, so the
worker and the command line refuse the same files with the same `InputError`.
"""

from __future__ import annotations

import math
import re
import struct
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from compression_core.errors import InputError
from compression_core.jsonbound import loads_bounded

MAX_TENSORS = 100_000  # a state dict with more tensors than this is not a model we can serve
MAX_SAFETENSORS_HEADER = 100_000_000  # the safetensors library's own limit
MAX_DIMS = 16
MAX_HEADER_DEPTH = 8  # a safetensors header nests 3 levels (entry, shape); JSON deeper is refused

# dtypes the pipeline compresses (floats) or carries unchanged (integers, bool)
SUPPORTED_DTYPES: dict[torch.dtype, str] = {
    torch.float32: "F32",
    torch.float64: "F64",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.int16: "I16",
    torch.int32: "I32",
    torch.int64: "I64",
    torch.bool: "BOOL",
}
_SAFETENSORS_WIDTH = {
    "F32": 4,
    "F64": 8,
    "F16": 2,
    "BF16": 2,
    "I8": 1,
    "U8": 1,
    "I16": 2,
    "I32": 4,
    "I64": 8,
    "BOOL": 1,
}
_SAFETENSORS_REFUSED = {
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "F8_E8M0": "float8_e8m0fnu",
    "F4": "float4",
    "F6_E2M3": "float6",
    "F6_E3M2": "float6",
    "U16": "uint16",
    "U32": "uint32",
    "U64": "uint64",
    "C64": "complex64",
    "C128": "complex128",
}
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")


@dataclass(frozen=True)
class TensorMeta:
    """One tensor as the file declares it; `nbytes` is what its dense copy needs."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int


@dataclass(frozen=True)
class StateDictMeta:
    """Every tensor of a checked file and the file's size, which bounds their dense bytes."""

    tensors: tuple[TensorMeta, ...]
    file_bytes: int

    @property
    def dense_bytes(self) -> int:
        return sum(tensor.nbytes for tensor in self.tensors)


def inspect_state_dict(path: str | Path) -> StateDictMeta:
    """Check a `.safetensors` or torch zip file from its metadata; raise InputError saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path.name}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path.name}: the file is empty")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        tensors = _inspect_safetensors(path, size)
    elif suffix in (".pth", ".pt", ".bin", ".ckpt"):
        tensors = _inspect_torch(path, size)
    else:
        raise InputError(
            f"{path.name}: unknown extension {suffix or '(none)'}; expected a state dict (.safetensors, "
            ".pth, .pt, .bin, .ckpt) or an ONNX graph (.onnx)"
        )
    if not tensors:
        raise InputError(f"{path.name}: the state dict is empty")
    meta = StateDictMeta(tuple(tensors), size)
    if meta.dense_bytes > size:  # implied by the checks above; kept as the rule they serve
        raise InputError(f"{path.name}: the tensors need {meta.dense_bytes} bytes but the file stores {size}")
    return meta


# -- safetensors -------------------------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _inspect_safetensors(path: Path, size: int) -> list[TensorMeta]:
    """The format: 8 bytes little-endian header length N, N bytes of JSON, then the data region."""
    name = path.name
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise InputError(
                f"{name}: not a readable safetensors file (shorter than its 8-byte header length)"
            )
        (length,) = struct.unpack("<Q", head)
        if length > min(MAX_SAFETENSORS_HEADER, size - 8):
            raise InputError(
                f"{name}: not a readable safetensors file (the header claims {length} bytes, "
                f"the file has {size})"
            )
        raw = handle.read(length)
    try:  # entry, its shape: three levels; __metadata__ is flat
        header = loads_bounded(
            raw.decode("utf-8"), MAX_HEADER_DEPTH, "the header", object_pairs_hook=_no_duplicates
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{name}: not a readable safetensors file (header: {exc})") from None
    if not isinstance(header, dict):
        raise InputError(f"{name}: not a readable safetensors file (the header is not a JSON object)")
    header.pop("__metadata__", None)
    if len(header) > MAX_TENSORS:
        raise InputError(f"{name}: {len(header)} tensors (at most {MAX_TENSORS})")
    data_bytes = size - 8 - length
    tensors, extents = [], []
    for key, entry in header.items():
        dtype, shape, start, end = _safetensors_entry(name, key, entry)
        width = _SAFETENSORS_WIDTH[dtype]
        nbytes = math.prod(shape) * width
        if end - start != nbytes:
            raise InputError(
                f"{name}: tensor {key!r} {dtype}{list(shape)} needs {nbytes} bytes but its offsets "
                f"span {end - start}"
            )
        if end > data_bytes:
            raise InputError(
                f"{name}: tensor {key!r} needs bytes {start}..{end} but the file stores {data_bytes} "
                "bytes of data"
            )
        tensors.append(TensorMeta(key, dtype, shape, nbytes))
        if nbytes:
            extents.append((start, end, key))
    _refuse_overlaps(name, extents, "the data region")
    return tensors


def _safetensors_entry(name: str, key: str, entry: object) -> tuple[str, tuple[int, ...], int, int]:
    if not isinstance(entry, dict):
        raise InputError(f"{name}: tensor {key!r}: its header entry is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype in _SAFETENSORS_REFUSED:
        raise InputError(
            f"{name}: tensor {key!r} has dtype {_SAFETENSORS_REFUSED[dtype]} ({dtype}), which is not "
            f"supported; supported: {', '.join(_SAFETENSORS_WIDTH)}"
        )
    if dtype not in _SAFETENSORS_WIDTH:
        raise InputError(f"{name}: tensor {key!r} has unknown dtype {dtype!r}")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_DIMS
        or not all(type(n) is int and n >= 0 for n in shape)
    ):
        raise InputError(f"{name}: tensor {key!r} has an invalid shape {shape!r}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(type(n) is int and n >= 0 for n in offsets)
        or offsets[0] > offsets[1]
    ):
        raise InputError(f"{name}: tensor {key!r} has invalid data_offsets {offsets!r}")
    return str(dtype), tuple(shape), offsets[0], offsets[1]


# -- torch zip files ---------------------------------------------------------------------------------------


def _inspect_torch(path: Path, size: int) -> list[TensorMeta]:
    name = path.name
    with path.open("rb") as handle:
        magic = handle.read(2)
    if magic != b"PK":
        raise InputError(
            f"{name}: refused: not a torch.save zip archive (a plain or legacy pickle); save it with "
            "torch.save (PyTorch >= 1.6) or as .safetensors"
        )
    records = _zip_records(name, path, size)
    loaded = _load_on_meta(path)
    state = unwrap_state_dict(loaded, source=name)
    tensors, extents = [], []
    for key, tensor in state.items():
        if tensor.dtype not in SUPPORTED_DTYPES:
            raise InputError(
                f"{name}: tensor {key!r} has dtype {str(tensor.dtype).removeprefix('torch.')}, which is "
                "not supported; supported: "
                + ", ".join(str(d).removeprefix("torch.") for d in SUPPORTED_DTYPES)
            )
        if tensor.dim() > MAX_DIMS:
            raise InputError(f"{name}: tensor {key!r} has {tensor.dim()} dimensions (at most {MAX_DIMS})")
        storage = tensor.untyped_storage()
        offset = getattr(storage, "_checkpoint_offset", None)
        record = records.get(offset) if isinstance(offset, int) else None
        if record is None or not isinstance(offset, int):
            raise InputError(f"{name}: tensor {key!r}: its storage is not a record of the archive")
        record_name, record_bytes = record
        if storage.nbytes() != record_bytes:
            raise InputError(
                f"{name}: tensor {key!r} declares a storage of {storage.nbytes()} bytes but the file "
                f"stores {record_bytes} for it ({record_name})"
            )
        start, end = _view_extent(name, key, tensor)
        if end > record_bytes:
            raise InputError(
                f"{name}: tensor {key!r} {list(tensor.shape)} reaches byte {end} of a storage of "
                f"{record_bytes} bytes"
            )
        nbytes = tensor.numel() * tensor.element_size()
        tensors.append(TensorMeta(key, SUPPORTED_DTYPES[tensor.dtype], tuple(tensor.shape), nbytes))
        if nbytes:
            extents.append((offset + start, offset + end, key))
    _refuse_overlaps(name, extents, "the file")
    return tensors


def _zip_records(name: str, path: Path, size: int) -> dict[int, tuple[str, int]]:
    """data offset -> (member name, size) of each member, after refusing forged or compressed archives."""
    records: dict[int, tuple[str, int]] = {}
    try:
        with zipfile.ZipFile(path) as archive, path.open("rb") as handle:
            members = archive.infolist()
            if len(members) > MAX_TENSORS + 16:
                raise InputError(f"{name}: the archive has {len(members)} members (at most {MAX_TENSORS})")
            for member in members:
                if member.compress_type != zipfile.ZIP_STORED:
                    raise InputError(
                        f"{name}: archive member {member.filename!r} is compressed; torch.save never "
                        "compresses members"
                    )
                if member.file_size > size or member.compress_size > size or member.header_offset > size:
                    raise InputError(
                        f"{name}: archive member {member.filename!r} claims {member.file_size} bytes, but "
                        f"the whole file has {size}: a forged archive"
                    )
                handle.seek(member.header_offset)
                local = handle.read(30)
                if len(local) < 30 or local[:4] != b"PK\x03\x04":
                    raise InputError(f"{name}: archive member {member.filename!r} has no local header")
                name_len, extra_len = struct.unpack("<HH", local[26:30])
                start = member.header_offset + 30 + name_len + extra_len
                if start + member.file_size > size:
                    raise InputError(
                        f"{name}: archive member {member.filename!r} runs past the end of the file"
                    )
                records[start] = (member.filename, member.file_size)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, struct.error) as exc:
        raise InputError(
            f"{name}: not a readable PyTorch file (a corrupted or truncated zip: {exc})"
        ) from None
    return records


def _load_on_meta(path: Path) -> object:
    """The pickle through torch's weights_only unpickler, each storage on the meta device (no data read)."""
    import pickle

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="meta", weights_only=True)
    except pickle.UnpicklingError as error:
        raise refused_pickle(path, error) from None
    except Exception as error:  # noqa: BLE001 - torch raises many kinds for a damaged archive
        raise InputError(f"{path.name}: not a readable PyTorch file ({_first_line(error)})") from None


def _view_extent(name: str, key: str, tensor: torch.Tensor) -> tuple[int, int]:
    """The byte range [start, end) of its storage that a tensor's view touches; refuse zero strides and
    views whose elements overlap (both make the dense copy bigger than the bytes stored)."""
    width = tensor.element_size()
    if tensor.numel() == 0:
        return 0, 0
    dims = [
        (stride, extent) for extent, stride in zip(tensor.shape, tensor.stride(), strict=True) if extent > 1
    ]
    reach = 0  # the furthest element offset reached by the dimensions with smaller strides
    for stride, extent in sorted((int(s), int(e)) for s, e in dims):
        if stride <= 0:
            raise InputError(
                f"{name}: tensor {key!r} {list(tensor.shape)} has stride {stride}: it repeats bytes the "
                "file stores once"
            )
        if stride <= reach:
            raise InputError(
                f"{name}: tensor {key!r} {list(tensor.shape)} with strides {list(tensor.stride())} "
                "overlaps itself"
            )
        reach += stride * (extent - 1)
    start = int(tensor.storage_offset()) * width
    return start, start + (reach + 1) * width


def _refuse_overlaps(name: str, extents: list[tuple[int, int, str]], where: str) -> None:
    extents.sort()
    for (_, end, first), (start, _, second) in zip(extents, extents[1:], strict=False):
        if start < end:
            raise InputError(
                f"{name}: tensors {first!r} and {second!r} share bytes of {where}; save each tensor "
                "with its own data (e.g. clone tied weights)"
            )


def unwrap_state_dict(obj: object, *, source: str = "input") -> dict[str, torch.Tensor]:
    """A loaded object as a non-empty `str -> dense tensor` mapping, unwrapping {"state_dict": ...}; the
    tensors are returned as loaded (views included)."""
    from collections.abc import Mapping

    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping):
                obj = inner
                break
    if not isinstance(obj, Mapping):
        raise InputError(
            f"{source}: expected a state dict (a mapping of names to tensors), found {_kind(obj)}"
        )
    if not obj:
        raise InputError(f"{source}: the state dict is empty")
    if len(obj) > MAX_TENSORS:
        raise InputError(f"{source}: {len(obj)} tensors (at most {MAX_TENSORS})")
    result: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise InputError(f"{source}: key {key!r} is a {type(key).__name__}, expected a string")
        if not isinstance(value, torch.Tensor):
            raise InputError(f"{source}: value of {key!r} is a {_kind(value)}, expected a tensor")
        if value.layout != torch.strided:
            raise InputError(
                f"{source}: {key!r} is a {value.layout} tensor; only dense tensors are supported"
            )
        result[key] = value
    return result


def _kind(obj: object) -> str:
    return type(obj).__name__ if obj is not None else "None"


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_GLOBAL = re.compile(r"GLOBAL ([A-Za-z_][\w.]*)")
_PICKLE_SCAN_BYTES = 16 * 1024 * 1024  # how much of data.pkl is searched for module classes


def refused_pickle(path: Path, error: BaseException) -> InputError:
    """The error for a torch file whose pickle holds more than tensors, in plain words: a pickled module
    (`torch.save(model)`) is named as such with what to upload instead; otherwise the class that was
    refused. torch's own message is long, has ANSI escapes and suggests unpickling the file anyway."""
    if _pickles_a_module(path):
        return InputError(
            f"{path.name}: this is a pickled module (torch.save(model)), which is never unpickled here; "
            "upload model.state_dict() instead (safetensors preferred: "
            'safetensors.torch.save_file(model.state_dict(), "model.safetensors"))'
        )
    found = _GLOBAL.search(_ANSI.sub("", str(error)))
    what = f"it refers to {found.group(1)}" if found else _first_line(error)
    return InputError(
        f"{path.name}: refused: the file holds objects other than tensors and plain containers ({what}); "
        "upload a state dict (safetensors preferred)"
    )


def _pickles_a_module(path: Path) -> bool:
    """Whether the archive's pickle names torch.nn module classes (read as bytes, never unpickled)."""
    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
            if name is None:
                return False
            with archive.open(name) as handle:
                return b"torch.nn.modules." in handle.read(_PICKLE_SCAN_BYTES)
    except (OSError, zipfile.BadZipFile, RuntimeError, ValueError):
        return False


def _first_line(error: BaseException) -> str:
    text = _ANSI.sub("", str(error)).strip().splitlines()
    line = text[0] if text else type(error).__name__
    return line[:300]
