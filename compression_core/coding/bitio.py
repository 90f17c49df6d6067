"""Vectorized bit packing (MSB-first) and bounds-checked byte reading, shared by every coder.

Bit streams are big-endian in bit order: the first code's most significant bit is the most significant bit
of the first byte. Codes never overlap, so adding their shifted values equals OR-ing them, which lets the
writer merge them with integer sums instead of a per-code loop.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

import numpy as np

from compression_core.errors import FormatError

MAX_WRITE_LENGTH = 32  # longest single code `write_codes` accepts, in bits
_CHUNK = 1 << 18  # symbols per vector pass: ~10 int64 temporaries of this size bound the coders' memory


def write_codes(codes: np.ndarray, lengths: np.ndarray) -> tuple[bytes, int]:
    """Concatenate `codes[i]` (its low `lengths[i]` bits, MSB first); return (bytes, total bits)."""
    codes = np.asarray(codes).ravel()
    lengths = np.asarray(lengths).ravel()
    if codes.shape != lengths.shape:
        raise ValueError("codes and lengths differ in size")
    if lengths.size and (int(lengths.min()) < 0 or int(lengths.max()) > MAX_WRITE_LENGTH):
        raise ValueError(f"code lengths must lie in [0, {MAX_WRITE_LENGTH}]")
    total = int(lengths.sum(dtype=np.int64))
    chunks = ((codes[lo : lo + _CHUNK], lengths[lo : lo + _CHUNK]) for lo in range(0, codes.size, _CHUNK))
    return _write(chunks, total), total


def write_symbols(symbols: np.ndarray, codes: np.ndarray, lengths: np.ndarray, total: int) -> bytes:
    """`write_codes(codes[symbols], lengths[symbols])` (`total` = the sum of those lengths), looking the
    codes up chunk by chunk: no per-symbol array of the whole stream is made."""
    symbols = np.asarray(symbols).ravel()
    chunks = (
        (codes[part], lengths[part])
        for part in (symbols[lo : lo + _CHUNK] for lo in range(0, symbols.size, _CHUNK))
    )
    return _write(chunks, total)


def _write(chunks: Iterable[tuple[np.ndarray, np.ndarray]], total: int) -> bytes:
    """The bits of (codes, lengths) chunks, in order, `total` bits in all.

    Each code is shifted into a 64-bit window aligned to the 32-bit word it starts in; codes starting in
    the same word occupy disjoint bits, so one `add.reduceat` per word merges them exactly, and the window's
    two halves are added to that word and the next.
    """
    words = np.zeros((total + 31) // 32 + 2, dtype=np.uint64)
    base = 0
    u32, u64 = np.uint64(32), np.uint64(64)
    for part_codes, part_lengths in chunks:
        if not part_codes.size:
            continue
        c = part_codes.astype(np.uint64)
        n = part_lengths.astype(np.uint64)
        ends = np.cumsum(n)
        ends += np.uint64(base)
        base = int(ends[-1])
        starts = ends - n
        w = starts >> np.uint64(5)
        window = c << (u64 - ((starts & np.uint64(31)) + n))
        first = np.flatnonzero(w[1:] != w[:-1]) + 1
        first = np.concatenate((np.zeros(1, dtype=first.dtype), first))
        merged = np.add.reduceat(window, first)
        idx = w[first].astype(np.int64)
        words[idx] += merged >> u32
        words[idx + 1] += merged & np.uint64(0xFFFFFFFF)
    if base != total:
        raise ValueError(f"codes add up to {base} bits, {total} declared")
    return words.astype(">u4").tobytes()[: (total + 7) // 8]


def pack_fixed(values: np.ndarray, width: int) -> bytes:
    """Fixed-width packing: every value in `width` bits (0 <= width <= 32), MSB first, zero-padded."""
    values = np.asarray(values).ravel()
    if width == 0 or values.size == 0:
        if width == 0 and values.size and int(values.max()) != 0:
            raise ValueError("width 0 can only store zeros")
        return b""
    if int(values.min()) < 0 or int(values.max()) >> width:
        raise ValueError(f"values do not fit in {width} bits")
    same = np.full(min(values.size, _CHUNK), width, dtype=np.uint64)
    chunks = (
        (values[lo : lo + _CHUNK], same[: min(_CHUNK, values.size - lo)])
        for lo in range(0, values.size, _CHUNK)
    )
    return _write(chunks, values.size * width)


def fixed_nbytes(count: int, width: int) -> int:
    return (count * width + 7) // 8


def windows(data: bytes, pad: int = 0) -> np.ndarray:
    """A read-only big-endian int64 view starting at every byte: `windows(d)[i]` holds bytes i..i+7.

    The view costs no copy of the stream; `pad` extra zero bytes let readers run past the end safely.
    """
    buf = np.frombuffer(bytes(data) + bytes(pad + 8), dtype=np.uint8)
    return np.ndarray(shape=(buf.size - 7,), dtype=">i8", buffer=buf, offset=0, strides=(1,))


def read_bits(win: np.ndarray, offsets: np.ndarray, width: int) -> np.ndarray:
    """The `width`-bit (<= 57) integers starting at bit `offsets` of the stream behind `win`."""
    v = win[offsets >> 3]
    return (v >> (64 - width - (offsets & 7))) & ((1 << width) - 1)


def unpack_fixed(data: bytes, count: int, width: int, dtype: type = np.int64) -> np.ndarray:
    """Inverse of `pack_fixed`, as `dtype` (which must hold `width` bits); the caller has checked that
    `data` holds `count * width` bits. Read chunk by chunk: no int64 array of the whole stream."""
    if width == 0:
        return np.zeros(count, dtype=dtype)
    if len(data) < fixed_nbytes(count, width):
        raise FormatError("fixed-width stream is shorter than its declared count")
    if width > 32:
        raise FormatError(f"fixed width {width} exceeds 32 bits")
    win = windows(data)
    out: np.ndarray = np.empty(count, dtype=dtype)
    for lo in range(0, count, _CHUNK):
        offsets = np.arange(lo, min(lo + _CHUNK, count), dtype=np.int64) * width
        out[lo : lo + offsets.size] = read_bits(win, offsets, width)
    return out


class ByteReader:
    """Little-endian reads over a byte string; every read checks that the bytes are present first."""

    def __init__(self, data: bytes | memoryview, what: str = "stream") -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.what = what

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if n < 0 or n > self.remaining:
            raise FormatError(f"{self.what}: needs {n} more bytes, only {self.remaining} present")
        out = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return out

    def _unpack(self, fmt: str) -> int:
        size = struct.calcsize(fmt)
        (value,) = struct.unpack(fmt, self.take(size))
        return int(value)

    def u8(self) -> int:
        return self._unpack("<B")

    def u32(self) -> int:
        return self._unpack("<I")

    def u64(self) -> int:
        return self._unpack("<Q")

    def varint(self, limit: int = 1 << 63) -> int:
        """Unsigned LEB128 (7 bits a byte, low first), at most 9 bytes, no redundant trailing zero byte."""
        value = 0
        for i in range(9):
            byte = self.u8()
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                if byte == 0 and i > 0:
                    raise FormatError(f"{self.what}: over-long varint")
                if value > limit:
                    raise FormatError(f"{self.what}: value {value} exceeds {limit}")
                return value
        raise FormatError(f"{self.what}: varint longer than 9 bytes")

    def expect_end(self) -> None:
        if self.remaining:
            raise FormatError(f"{self.what}: {self.remaining} unexpected trailing bytes")


class ByteWriter:
    """Little-endian writes into a growing buffer."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def u8(self, v: int) -> None:
        self.parts.append(struct.pack("<B", v))

    def u32(self, v: int) -> None:
        self.parts.append(struct.pack("<I", v))

    def u64(self, v: int) -> None:
        self.parts.append(struct.pack("<Q", v))

    def varint(self, v: int) -> None:
        if v < 0 or v >= 1 << 63:
            raise ValueError("varints hold 0 <= v < 2**63")
        out = bytearray()
        while True:
            byte, v = v & 0x7F, v >> 7
            out.append(byte | (0x80 if v else 0))
            if not v:
                break
        self.parts.append(bytes(out))

    def raw(self, b: bytes) -> None:
        self.parts.append(bytes(b))

    def getvalue(self) -> bytes:
        return b"".join(self.parts)
