"""Constants of the `.bin` container and the checks shared by its writer and reader."""

from __future__ import annotations

import math

import torch

from compression_core.errors import FormatError
from compression_core.records import TensorRecord

MAGIC = b"MCSB"
VERSION = 1
STREAM_VERSION = 2  # same header; payload first, manifest last (written as it streams)
FIXED_HEADER = 24  # magic(4) version(u16) flags(u16) manifest_len(u32) payload_len(u64) crc32(u32)
MAX_MANIFEST_BYTES = 16 << 20  # decompressed JSON manifest cap
MAX_NDIM = 32
MAX_NAME_CHARS = 4096
DEFAULT_MAX_ELEMENTS = (
    1 << 30
)  # total declared tensor entries per file (4 GiB of float32); callers may raise it

# Stored name <-> torch dtype. Only these may appear in a file.
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
    "int8": torch.int8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
FLOAT_DTYPES = {"float32", "float16", "bfloat16", "float64"}
ROLES = ("values", "positions", "codebook", "indices", "u", "v")


def dtype_name(dtype: torch.dtype) -> str:
    try:
        return DTYPE_NAMES[dtype]
    except KeyError:
        raise FormatError(f"dtype {dtype} is not storable (allowed: {', '.join(DTYPES)})") from None


def numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def _is_integer(dtype: torch.dtype) -> bool:
    return not dtype.is_floating_point and not dtype.is_complex and dtype != torch.bool


def check_record(rec: TensorRecord) -> None:
    """Raise FormatError unless `rec.reconstruct()` is well defined: the shared writer/reader contract."""
    where = f"tensor {rec.name!r}"
    n = numel(rec.shape)
    dtype_name(rec.dtype)
    if rec.values is not None:  # stored flattened (row-major), as reconstruct() consumes it
        dtype_name(rec.values.dtype)
    if rec.codebook is not None:
        if rec.codebook.dim() != 1:
            raise FormatError(f"{where}: codebook must be 1-D")
        dtype_name(rec.codebook.dtype)
    if rec.factors is not None:
        u, v = rec.factors
        if u.dim() != 2 or v.dim() != 2 or u.shape[1] != v.shape[0]:
            raise FormatError(f"{where}: factors must be (m, r) and (r, n)")
        if u.shape[0] * v.shape[1] != n:
            raise FormatError(f"{where}: factors give {u.shape[0] * v.shape[1]} entries, shape needs {n}")
        dtype_name(u.dtype)
        dtype_name(v.dtype)
    if rec.positions is not None:
        p = rec.positions
        if p.dim() != 1 or not _is_integer(p.dtype):
            raise FormatError(f"{where}: positions must be a 1-D integer tensor")
        if p.numel() and (int(p[0]) < 0 or int(p[-1]) >= n or bool((p[1:] <= p[:-1]).any())):
            raise FormatError(f"{where}: positions must be sorted, unique and inside the tensor")
    if rec.indices is not None and rec.codebook is None:
        raise FormatError(f"{where}: indices need a codebook")
    if rec.codebook is not None:
        if rec.indices is None:
            raise FormatError(f"{where}: a codebook needs indices")
        idx = rec.indices
        if not _is_integer(idx.dtype):
            raise FormatError(f"{where}: indices must be integers")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= rec.codebook.numel()):
            raise FormatError(f"{where}: indices outside the codebook")
        kept = idx.numel()
    elif rec.values is not None:
        kept = rec.values.numel()
    elif rec.factors is not None:
        return
    else:
        raise FormatError(f"{where}: a record needs values, codebook + indices, or factors")
    if rec.factors is not None:
        return
    expected = rec.positions.numel() if rec.positions is not None else n
    if kept != expected:
        raise FormatError(f"{where}: {kept} kept entries, {expected} expected")
