"""Fixed-width packing of integer streams (`encoding="raw"`): every symbol in ceil(log2(k)) bits."""

from __future__ import annotations

import numpy as np

from compression_core.coding.bitio import fixed_nbytes, pack_fixed, unpack_fixed
from compression_core.errors import FormatError


def width_for(alphabet: int) -> int:
    """Bits per symbol for symbols in [0, alphabet): ceil(log2(alphabet)), 0 when alphabet <= 1."""
    return max(0, int(alphabet) - 1).bit_length()


def encode(symbols: np.ndarray, width: int) -> bytes:
    symbols = np.asarray(symbols)
    if not np.issubdtype(symbols.dtype, np.integer):
        symbols = symbols.astype(np.int64)
    return pack_fixed(symbols, width)


def decode(data: bytes, count: int, width: int, dtype: type = np.int64) -> np.ndarray:
    """Inverse of `encode` (as `dtype`, which must hold `width` bits); the byte length must match
    `count * width` bits exactly."""
    if not 0 <= width <= 32:
        raise FormatError(f"raw width {width} outside [0, 32]")
    if len(data) != fixed_nbytes(count, width):
        raise FormatError(f"raw stream holds {len(data)} bytes, {fixed_nbytes(count, width)} expected")
    return unpack_fixed(data, count, width, dtype)
