"""Coding the sorted flat positions of a pruned tensor's kept entries.

Two layouts, and the encoder keeps whichever is smaller for each tensor:
- "gaps" (Deep Compression's relative indices): position i is stored as the gap to the previous one
  (the first as position + 1). Symbols live in [0, 2**w): s < M = 2**w - 1 means "advance s + 1 and keep
  that entry"; s = M is a filler, "advance M, keep nothing" (Deep Compression's filler zero without the
  zero weight). The width w is chosen per tensor by the estimated coded size.
- "bitmap": one bit per entry, packed eight to a byte (MSB first), and the bytes coded as symbols.
Either symbol stream is then packed at a fixed width (w bits for gaps, 8 for bitmap bytes) or, unless the
record asks for `encoding="raw"`, Huffman coded when that is smaller. Gaps win up to about 50% density,
bitmaps above (measured in benchmarks/bench_coding.py, summarized in docs/format.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np

from compression_core.coding import huffman, raw
from compression_core.coding.bitio import fixed_nbytes
from compression_core.errors import FormatError

MAX_GAP_WIDTH = 20


@dataclass(frozen=True)
class CodedPositions:
    layout: str  # "gaps" or "bitmap"
    width: int  # gap width w (gaps) or 8 (bitmap)
    coding: str  # "huffman" or "raw"
    symbols: np.ndarray  # the coded symbol stream (for statistics)
    data: bytes


_CHUNK = 1 << 18  # positions (or bitmap bytes) handled at once: temporaries of a few MiB per pass
_DENSE_GAPS = 1 << 20  # a chunk whose gaps are all below this is histogrammed by bincount, not unique


def _chunks(positions: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(gaps, their positions' slice) chunk by chunk; gap = position - previous (the first: position + 1)."""
    previous = -1
    for lo in range(0, positions.size, _CHUNK):
        part = positions[lo : lo + _CHUNK].astype(np.int64)
        gaps = np.diff(part, prepend=previous)
        previous = int(part[-1])
        yield gaps, part


def gap_histogram(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`np.unique(gaps - 1, return_counts=True)` (gaps - 1 = the entries skipped before each position),
    chunk by chunk: the coder's widths and `metrics.gap_bits` need only this histogram."""
    dense = np.zeros(0, dtype=np.int64)
    sparse: list[tuple[np.ndarray, np.ndarray]] = []
    for gaps, _ in _chunks(positions):
        g1 = gaps - 1
        if int(g1.min()) >= 0 and int(g1.max()) < _DENSE_GAPS:
            counts = np.bincount(g1, minlength=dense.size)
            counts[: dense.size] += dense
            dense = counts
        else:
            sparse.append(np.unique(g1, return_counts=True))
    values = np.flatnonzero(dense)
    counts = dense[values]
    if sparse:
        all_values = np.concatenate([values, *(v for v, _ in sparse)])
        all_counts = np.concatenate([counts, *(c for _, c in sparse)])
        values, inverse = np.unique(all_values, return_inverse=True)
        counts = np.zeros(values.size, dtype=np.int64)
        np.add.at(counts, inverse, all_counts)
    return values.astype(np.int64), counts.astype(np.int64)


def _symbol_dtype(width: int) -> type:
    return np.uint8 if width <= 8 else np.uint16 if width <= 16 else np.uint32


def _gap_symbols(positions: np.ndarray, width: int, total: int) -> np.ndarray:
    """The gap stream at `width` (`total` symbols, known from the histogram), in the narrowest dtype."""
    m = (1 << width) - 1
    out: np.ndarray = np.full(total, m, dtype=_symbol_dtype(width))
    at = 0
    for gaps, _ in _chunks(positions):
        g1 = gaps - 1
        fillers = g1 // m
        ends = np.cumsum(fillers + 1)
        out[at + ends - 1] = g1 % m
        at += int(ends[-1])
    assert at == total
    return out


def _symbol_count(values: np.ndarray, counts: np.ndarray, width: int) -> int:
    """Symbols of the gap stream at `width`: one per position plus its fillers."""
    return int(counts.sum() + np.sum(counts * (values // ((1 << width) - 1))))


def _bitmap(positions: np.ndarray, numel: int) -> np.ndarray:
    """`np.packbits` of the keep mask (uint8), built a chunk of entries at a time."""
    out = np.empty((numel + 7) // 8, dtype=np.uint8)
    step = _CHUNK // 8
    for b0 in range(0, out.size, step):
        b1 = min(b0 + step, out.size)
        e0, e1 = 8 * b0, min(8 * b1, numel)
        lo, hi = np.searchsorted(positions, np.array([e0, e1], dtype=positions.dtype))
        bits = np.zeros(e1 - e0, dtype=bool)
        bits[positions[lo:hi] - e0] = True
        out[b0:b1] = np.packbits(bits)
    return out


def _estimate_gap_bits(values: np.ndarray, counts: np.ndarray, width: int, coding: str) -> float:
    """Estimated coded size of the gap stream at `width`, from the histogram of gap - 1."""
    m = (1 << width) - 1
    fillers = float(np.sum(counts * (values // m)))
    total = float(counts.sum()) + fillers
    if coding == "raw":
        return total * width
    hist = np.bincount(values % m, weights=counts, minlength=m + 1)
    hist[m] += fillers
    hist = hist[hist > 0]
    if hist.size == 1:
        return 0.0
    lengths = huffman.code_lengths(hist.astype(np.int64))
    return float(np.sum(hist * lengths)) + hist.size * (5 + width)  # code bits + table, roughly


def _best_gap_width(values: np.ndarray, counts: np.ndarray, coding: str) -> int:
    """Width minimizing the estimated size, from the histogram (`values`, `counts`) of gap - 1."""
    top = max(1, min(MAX_GAP_WIDTH, int(values[-1] + 1).bit_length() + 1))
    costs = [_estimate_gap_bits(values, counts, w, coding) for w in range(1, top + 1)]
    return int(np.argmin(costs)) + 1


def encode(positions: np.ndarray, numel: int, coding: str) -> CodedPositions:
    """Code sorted, unique positions in [0, numel) with the smallest layout and coding.

    `coding="raw"` allows fixed-width symbols only; `coding="huffman"` also tries Huffman and keeps it
    when it is smaller (a Huffman table can outweigh its gain on short or flat streams). The options, in
    order (the first of equal sizes wins): raw gaps, Huffman gaps, raw bitmap, Huffman bitmap. Only one
    symbol stream (narrow dtype) exists at a time; a raw option's size is known without packing it.
    """
    p = np.asarray(positions).ravel()
    if not np.issubdtype(p.dtype, np.integer):
        p = p.astype(np.int64)
    options: list[tuple[int, Callable[[], CodedPositions]]] = []
    if p.size:
        values, counts = gap_histogram(p)
        options.append(_raw_gaps(p, values, counts))
        if coding == "huffman":
            # (raw at this width is never smaller than raw at w_raw, which minimizes the raw size)
            options.append(_huffman_gaps(p, values, counts))
    else:
        empty = p.astype(np.int64)
        options.append((0, lambda: CodedPositions("gaps", 1, "raw", empty, raw.encode(empty, 1))))
    if numel <= 2048 * max(p.size, 1):  # past this, a bitmap (>= 1 bit per 8 entries) cannot win
        options = [min(options, key=lambda o: o[0])]  # drop the losers' streams before the bitmap's
        bitmap = _bitmap(p, numel)
        raw_bitmap = CodedPositions("bitmap", 8, "raw", bitmap, b"")  # packed at width 8: the bytes
        options.append((bitmap.size, lambda: replace(raw_bitmap, data=bitmap.tobytes())))
        if coding == "huffman":
            coded = CodedPositions("bitmap", 8, "huffman", bitmap, huffman.encode(bitmap))
            options.append((len(coded.data), lambda: coded))
    _, build = min(options, key=lambda o: o[0])
    return build()


def _raw_gaps(
    p: np.ndarray, values: np.ndarray, counts: np.ndarray
) -> tuple[int, Callable[[], CodedPositions]]:
    """(size, builder) of fixed-width gaps at the width that makes them smallest; packed only if chosen."""
    width = _best_gap_width(values, counts, "raw")
    total = _symbol_count(values, counts, width)

    def build() -> CodedPositions:
        symbols = _gap_symbols(p, width, total)
        return CodedPositions("gaps", width, "raw", symbols, raw.encode(symbols, width))

    return fixed_nbytes(total, width), build


def _huffman_gaps(
    p: np.ndarray, values: np.ndarray, counts: np.ndarray
) -> tuple[int, Callable[[], CodedPositions]]:
    width = _best_gap_width(values, counts, "huffman")
    symbols = _gap_symbols(p, width, _symbol_count(values, counts, width))
    coded = CodedPositions("gaps", width, "huffman", symbols, huffman.encode(symbols))
    return len(coded.data), lambda: coded


def check_layout(*, layout: str, width: int, symbols: int, count: int, numel: int) -> None:
    """Reject declarations no valid stream can have, before any symbol is decoded."""
    if layout == "gaps":
        if not 1 <= width <= MAX_GAP_WIDTH:
            raise FormatError(f"gap width {width} outside [1, {MAX_GAP_WIDTH}]")
        if not count <= symbols <= numel + 1:
            raise FormatError(f"gap stream of {symbols} symbols cannot hold {count} positions in {numel}")
    elif layout == "bitmap":
        if width != 8 or symbols != (numel + 7) // 8:
            raise FormatError("bitmap positions must have width 8 and one byte per 8 entries")
    else:
        raise FormatError(f"unknown positions layout {layout!r}")


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)


def from_symbols(
    sym: np.ndarray, *, layout: str, width: int, count: int, numel: int, dtype: type = np.int64
) -> np.ndarray:
    """Positions (as `dtype`, strictly increasing, < numel) from a decoded symbol stream, validated.

    Two passes over the symbols, a chunk at a time (count and range, then the positions), so memory is the
    output plus a few MiB, whatever the stream's length."""
    if layout == "bitmap":
        if sym.size and int(sym.max()) > 255:
            raise FormatError("bitmap byte out of range")
        full, tail = divmod(numel, 8)
        beyond = sym.size > full and (int(sym[full]) & (0xFF >> tail) or bool(sym[full + 1 :].any()))
        if beyond:
            raise FormatError("bitmap sets entries past the tensor's end")
        found = sum(int(_POPCOUNT[sym[lo : lo + _CHUNK]].sum()) for lo in range(0, sym.size, _CHUNK))
    else:
        m = (1 << width) - 1
        if sym.size and int(sym.max()) > m:
            raise FormatError("gap symbol out of range")
        fillers = sum(int(np.count_nonzero(sym[lo : lo + _CHUNK] == m)) for lo in range(0, sym.size, _CHUNK))
        found = sym.size - fillers
        if found and _last_position(sym, m, found) >= numel:
            raise FormatError("a position lies past the tensor's end")
    if found != count:
        raise FormatError(f"positions stream holds {found} positions, {count} declared")
    out: np.ndarray = np.empty(count, dtype=dtype)
    at = 0
    if layout == "bitmap":
        for lo in range(0, sym.size, _CHUNK):
            pos = np.flatnonzero(np.unpackbits(sym[lo : lo + _CHUNK].astype(np.uint8))) + 8 * lo
            out[at : at + pos.size] = pos
            at += pos.size
    else:
        carry = -1
        for lo in range(0, sym.size, _CHUNK):
            part = sym[lo : lo + _CHUNK].astype(np.int64)
            filler = part == m
            advance = np.cumsum(np.where(filler, m, part + 1))
            advance += carry
            carry = int(advance[-1])
            pos = advance[~filler]
            out[at : at + pos.size] = pos
            at += pos.size
    return out


def _last_position(sym: np.ndarray, m: int, found: int) -> int:
    """The last kept position of a gap stream with `found` kept entries: every symbol's advance (s + 1,
    a filler m) up to the last non-filler, minus one."""
    total = sum(int(sym[lo : lo + _CHUNK].sum(dtype=np.int64)) for lo in range(0, sym.size, _CHUNK))
    trailing = 0  # fillers after the last kept entry (no encoder writes them; a reader must not count them)
    for hi in range(sym.size, 0, -_CHUNK):
        kept = np.flatnonzero(sym[max(0, hi - _CHUNK) : hi] != m)
        if kept.size:
            trailing += min(_CHUNK, hi) - 1 - int(kept[-1])
            break
        trailing += min(_CHUNK, hi)
    return total + found - 1 - trailing * m


def decode(
    data: bytes, *, layout: str, width: int, coding: str, symbols: int, count: int, numel: int
) -> np.ndarray:
    """Positions from one stream written by `encode` (the reader batches the Huffman part instead)."""
    check_layout(layout=layout, width=width, symbols=symbols, count=count, numel=numel)
    if coding == "raw":
        sym = raw.decode(data, symbols, width)
    elif coding == "huffman":
        sym = huffman.decode_parsed([huffman.parse_exact(data, symbols)])[0]
    else:
        raise FormatError(f"unknown positions coding {coding!r}")
    return from_symbols(sym, layout=layout, width=width, count=count, numel=numel)
