"""Read IDX files (the MNIST / Fashion-MNIST format), gzipped or not, with every declared size checked.

IDX: a 4-byte magic (two zero bytes, a type code, the number of dimensions), one big-endian uint32 per
dimension, then the data in C order. Only unsigned bytes (type 0x08) occur in these data sets.
"""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np

from compression_core.errors import InputError

__all__ = ["read_idx"]

UBYTE = 0x08
MAX_ELEMENTS = 500_000_000  # bound what a header may declare before reading anything


def read_idx(path: str | Path) -> np.ndarray:
    """The array an IDX file holds (uint8); InputError when the file is truncated or malformed."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as stream:
            magic = stream.read(4)
            if len(magic) != 4 or magic[:2] != b"\x00\x00":
                raise InputError(f"{path.name}: not an IDX file (magic {magic.hex()})")
            dtype_code, ndim = magic[2], magic[3]
            if dtype_code != UBYTE or not 1 <= ndim <= 4:
                raise InputError(f"{path.name}: unsupported IDX type 0x{dtype_code:02x} with {ndim} dims")
            shape = struct.unpack(f">{ndim}I", stream.read(4 * ndim))
            count = math.prod(shape)  # Python ints: a hostile header cannot overflow it
            if count > MAX_ELEMENTS:
                raise InputError(f"{path.name}: declares {count} elements, more than {MAX_ELEMENTS}")
            data = stream.read(count)
    except (OSError, EOFError, struct.error) as exc:
        raise InputError(f"{path.name}: unreadable IDX file: {exc}") from exc
    if len(data) != count:
        raise InputError(f"{path.name}: truncated: {len(data)} of {count} bytes")
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)
