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


def decode_lanes(streams: Sequence[ParsedStream]) -> list[np.ndarray]:
    """Symbols (int64) of every stream; all streams share one block size. FormatError if a block does not
    end exactly at its sync point."""
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
    offsets = np.concatenate(starts)
    expected = np.concatenate(expect_end)
    lane_nsym = np.concatenate(nsym)
    tbase, shift_base, mask = np.concatenate(lane_base), np.concatenate(lane_shift), np.concatenate(lane_mask)
    win = windows(b"".join(s.payload for s in streams), pad=(block * max(tops) + 7) // 8 + 8)
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
    if not np.array_equal(ends, expected):
        raise FormatError("Huffman blocks do not end at their sync points (corrupted stream)")
    return [
        out[:, a:b].T.reshape(-1)[: s.count].astype(np.int64)
        for s, (a, b) in zip(streams, spans, strict=True)
    ]
