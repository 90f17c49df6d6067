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

from collections.abc import Callable
from dataclasses import dataclass

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


def _gaps(positions: np.ndarray) -> np.ndarray:
    return np.diff(positions, prepend=-1)


def _gap_symbols(gaps: np.ndarray, width: int) -> np.ndarray:
    m = (1 << width) - 1
    g1 = gaps - 1
    fillers = g1 // m
    out = np.full(int(gaps.size + fillers.sum()), m, dtype=np.int64)
    out[np.cumsum(fillers + 1) - 1] = g1 % m
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


def _candidates(
    symbols: np.ndarray, width: int, layout: str, coding: str, huffman_ok: bool
) -> list[tuple[int, Callable[[], CodedPositions]]]:
    """(size in bytes, builder) per option; raw sizes are known without packing, so only the winner packs."""
    out: list[tuple[int, Callable[[], CodedPositions]]] = [
        (
            fixed_nbytes(symbols.size, width),
            lambda: CodedPositions(layout, width, "raw", symbols, raw.encode(symbols, width)),
        )
    ]
    if coding == "huffman" and huffman_ok:
        coded = CodedPositions(layout, width, "huffman", symbols, huffman.encode(symbols))
        out.append((len(coded.data), lambda: coded))
    return out


def encode(positions: np.ndarray, numel: int, coding: str) -> CodedPositions:
    """Code sorted, unique positions in [0, numel) with the smallest layout and coding.

    `coding="raw"` allows fixed-width symbols only; `coding="huffman"` also tries Huffman and keeps it
    when it is smaller (a Huffman table can outweigh its gain on short or flat streams).
    """
    p = np.asarray(positions, dtype=np.int64).ravel()
    options: list[tuple[int, Callable[[], CodedPositions]]] = []
    if p.size:
        gaps = _gaps(p)
        values, counts = np.unique(gaps - 1, return_counts=True)
        w_raw = _best_gap_width(values, counts, "raw")
        options += _candidates(_gap_symbols(gaps, w_raw), w_raw, "gaps", coding, False)
        if coding == "huffman":
            w = _best_gap_width(values, counts, coding)
            options += _candidates(_gap_symbols(gaps, w), w, "gaps", coding, True)
    else:
        options += _candidates(p, 1, "gaps", coding, True)
    if numel <= 2048 * max(p.size, 1):  # past this, a bitmap (>= 1 bit per 8 entries) cannot win
        bits = np.zeros(numel, dtype=bool)
        bits[p] = True
        options += _candidates(np.packbits(bits).astype(np.int64), 8, "bitmap", coding, True)
    size, build = min(options, key=lambda o: o[0])
    return build()


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


def from_symbols(sym: np.ndarray, *, layout: str, width: int, count: int, numel: int) -> np.ndarray:
    """Positions (int64, strictly increasing, < numel) from a decoded symbol stream, validated."""
    if layout == "bitmap":
        if sym.size and int(sym.max()) > 255:
            raise FormatError("bitmap byte out of range")
        bits = np.unpackbits(sym.astype(np.uint8))
        if bits[numel:].any():
            raise FormatError("bitmap sets entries past the tensor's end")
        pos = np.flatnonzero(bits[:numel]).astype(np.int64)
    else:
        m = (1 << width) - 1
        if sym.size and int(sym.max()) > m:
            raise FormatError("gap symbol out of range")
        filler = sym == m
        pos = (np.cumsum(np.where(filler, m, sym + 1)) - 1)[~filler]
        if pos.size and int(pos[-1]) >= numel:
            raise FormatError("a position lies past the tensor's end")
    if pos.size != count:
        raise FormatError(f"positions stream holds {pos.size} positions, {count} declared")
    return pos


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
