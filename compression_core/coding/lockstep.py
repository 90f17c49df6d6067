"""Lockstep decoding of Huffman blocks: every block of every stream in a group is one vector lane.

Per step, each lane peeks its code's maximum length in bits at its bit offset, looks (symbol, length) up in
its stream's 2**maxlen table (all tables concatenated), and advances. A group of streams sharing a block
size B needs B steps however many lanes it has, so decoding costs a few thousand numpy calls per model
rather than per tensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from compression_core.coding.bitio import windows
from compression_core.errors import FormatError

if TYPE_CHECKING:
    from compression_core.coding.parsed import ParsedStream


def _tables(streams: Sequence[ParsedStream]) -> tuple[np.ndarray, np.ndarray, list[int], list[int]]:
    """Concatenated canonical peek tables: (symbols, lengths, table base per stream, top per stream)."""
    syms, lens, bases, tops = [], [], [], []
    at = 0
    for s in streams:
        assert s.used is not None and s.lens is not None
        order = np.lexsort((s.used, s.lens))  # canonical order: by length, then symbol
        top = int(s.lens.max())
        repeat = np.left_shift(1, top - s.lens[order])
        syms.append(np.repeat(s.used[order].astype(np.int32), repeat))
        lens.append(np.repeat(s.lens[order], repeat))
        bases.append(at)
        tops.append(top)
        at += 1 << top
    return np.concatenate(syms), np.concatenate(lens), bases, tops


LANE_BUDGET = 1 << 23  # symbols one pass decodes at most (its steps x lanes matrix: 32 MiB of int32)


def decode_lanes(streams: Sequence[ParsedStream], dtypes: Sequence[type] | None = None) -> list[np.ndarray]:
    """Symbols of every stream (as `dtypes[i]`, which must hold its alphabet; int64 by default); all streams
    share one block size. FormatError if a block does not end exactly at its sync point.

    Lanes are decoded in passes of at most `LANE_BUDGET` symbols, each written straight into its stream's
    output: memory is the outputs plus one pass, not a lanes x steps matrix of the whole group."""
    block = streams[0].block
    sym_table, len_table, bases, tops = _tables(streams)
    starts, expect_end, nsym, lane_base, lane_shift, lane_mask, spans = [], [], [], [], [], [], []
    bit_at, lane_at = 0, 0
    for s, base, top in zip(streams, bases, tops, strict=True):
        assert s.block_bits is not None and s.block == block
        nb = s.block_bits.size
        ends = np.cumsum(s.block_bits) + bit_at
        starts.append(ends - s.block_bits)
        expect_end.append(ends)
        counts = np.full(nb, block, dtype=np.int64)
        counts[-1] = s.count - (nb - 1) * block
        nsym.append(counts)
        lane_base.append(np.full(nb, base, dtype=np.int64))
        lane_shift.append(np.full(nb, 64 - top, dtype=np.int64))
        lane_mask.append(np.full(nb, (1 << top) - 1, dtype=np.int64))
        spans.append((lane_at, lane_at + nb))
        bit_at += 8 * len(s.payload)
        lane_at += nb
    lanes = _Lanes(
        np.concatenate(starts),
        np.concatenate(nsym),
        np.concatenate(lane_base),
        np.concatenate(lane_shift),
        np.concatenate(lane_mask),
    )
    expected = np.concatenate(expect_end)
    win = windows(b"".join(s.payload for s in streams), pad=(block * max(tops) + 7) // 8 + 8)
    kinds = dtypes or [np.int64] * len(streams)
    outs: list[np.ndarray] = [
        np.empty((b - a) * block, dtype=kind) for (a, b), kind in zip(spans, kinds, strict=True)
    ]
    per_pass = max(1, LANE_BUDGET // block)
    for first in range(0, lane_at, per_pass):
        last = min(first + per_pass, lane_at)
        out, ends = lanes.run(first, last, win, sym_table, len_table)
        if not np.array_equal(ends, expected[first:last]):
            raise FormatError("Huffman blocks do not end at their sync points (corrupted stream)")
        for (a, b), dest in zip(spans, outs, strict=True):
            lo, hi = max(a, first), min(b, last)
            if lo < hi:  # this stream's lanes lo..hi: lane l holds symbols l*block.. of its stream
                rows = dest.reshape(b - a, block)[lo - a : hi - a, : out.shape[0]]
                rows[...] = out[:, lo - first : hi - first].T
    return [dest[: s.count] for s, dest in zip(streams, outs, strict=True)]


class _Lanes:
    """Per-lane start bits, symbol counts and table geometry; `run` decodes a range of lanes."""

    def __init__(
        self, offsets: np.ndarray, nsym: np.ndarray, tbase: np.ndarray, shift: np.ndarray, mask: np.ndarray
    ) -> None:
        self.offsets, self.nsym, self.tbase, self.shift_base, self.mask = offsets, nsym, tbase, shift, mask

    def run(
        self, first: int, last: int, win: np.ndarray, sym_table: np.ndarray, len_table: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(steps x lanes int32 symbols, each lane's end bit) for lanes first..last."""
        offsets = self.offsets[first:last].copy()
        lane_nsym = self.nsym[first:last]
        tbase, shift_base = self.tbase[first:last], self.shift_base[first:last]
        mask = self.mask[first:last]
        steps = int(lane_nsym.max())
        finish = {int(v): np.flatnonzero(lane_nsym == v) for v in np.unique(lane_nsym)}
        out = np.empty((steps, offsets.size), dtype=np.int32)
        ends = np.empty(offsets.size, dtype=np.int64)
        shift = np.empty_like(offsets)
        where = np.empty_like(offsets)
        step_len = np.empty_like(offsets)
        for j in range(steps):
            np.bitwise_and(offsets, 7, out=shift)
            np.subtract(shift_base, shift, out=shift)
            np.right_shift(offsets, 3, out=where)
            peek = win[where]  # a fresh native array (take's out= would cast slowly from the big-endian view)
            np.right_shift(peek, shift, out=peek)
            np.bitwise_and(peek, mask, out=peek)
            peek += tbase
            np.take(sym_table, peek, out=out[j])
            np.take(len_table, peek, out=step_len)
            offsets += step_len
            done = finish.get(j + 1)
            if done is not None:
                ends[done] = offsets[done]
        return out, ends
