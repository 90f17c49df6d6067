"""Canonical, length-limited Huffman coding of non-negative integer streams, vectorized with numpy.

Stream layout (v = unsigned LEB128 varint, u8 = one byte; docs/format.md holds the normative text):

    v  count                  number of symbols
    v  alphabet               largest symbol + 1 (0 for an empty stream)
    u8 table mode             0 empty, 1 single symbol (= alphabet - 1, no bits), 2 dense, 3 sparse
    dense:  alphabet code lengths, 5 bits each (0 = unused)
    sparse: v used, u8 width, `used` symbol gaps (first symbol, then difference - 1) at `width` bits,
            `used` code lengths at 5 bits each
    v total bits, v block size B, v sync base, u8 sync width,
    ceil(count / B) block bit lengths minus `sync base`, at `sync width` bits
    the code bits (MSB first), zero padded to a byte

The code is canonical: symbols sorted by (length, symbol) get consecutive codes, so the lengths alone define
it. The decoder needs a complete prefix code (Kraft sum exactly 1), which a Huffman code always is; that
makes every peek-table entry valid. Sync points (the bit length of every block of B symbols) let all blocks
decode in lockstep: B vector steps over ceil(count / B) lanes instead of count scalar steps.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np

from compression_core.coding.bitio import (
    ByteReader,
    ByteWriter,
    fixed_nbytes,
    pack_fixed,
    unpack_fixed,
    write_symbols,
)
from compression_core.coding.lockstep import decode_lanes
from compression_core.coding.parsed import ParsedStream
from compression_core.errors import FormatError

MAX_CODE_LENGTH = 20  # peek table of 2**20 int64 entries (8 MiB) at worst; the loss vs 24 is negligible
MAX_ALPHABET = 1 << 24
DEFAULT_BLOCK = 4096
MAX_BLOCK = 1 << 16
TABLE_PER_SYMBOL = 64  # 2**(longest code) may not exceed this many table entries per symbol
TABLE_BUDGET = 1 << 22  # peek-table entries per lockstep pass (tens of MiB); larger groups are split
MODE_EMPTY, MODE_SINGLE, MODE_DENSE, MODE_SPARSE = 0, 1, 2, 3
_LEN_BITS = 5


_CHUNK = 1 << 18  # symbols per vector pass: per-symbol temporaries stay a few MiB whatever the stream


def entropy_bits(symbols: np.ndarray) -> float:
    """Order-0 Shannon bound in bits for the whole stream: N*log2(N) - sum(c*log2(c))."""
    s = np.asarray(symbols).ravel()
    if s.size == 0:
        return 0.0
    return entropy_of_counts(_counts(s))


def entropy_of_counts(counts: np.ndarray) -> float:
    """`entropy_bits` of a stream from its histogram."""
    used = counts[counts > 0].astype(np.float64)
    if used.size == 0:
        return 0.0
    n = float(np.sum(counts))
    return float(n * np.log2(n) - np.sum(used * np.log2(used)))


def _counts(s: np.ndarray) -> np.ndarray:
    """Histogram of a stream of any integer dtype, chunk by chunk (`bincount` widens its input to intp)."""
    top = int(s.max())
    if top >= MAX_ALPHABET:
        raise ValueError(f"symbol {top} exceeds the Huffman alphabet limit {MAX_ALPHABET - 1}")
    counts = np.zeros(top + 1, dtype=np.int64)
    for lo in range(0, s.size, _CHUNK):
        counts += np.bincount(s[lo : lo + _CHUNK].astype(np.intp, copy=False), minlength=top + 1)
    return counts


def _huffman_lengths(counts: list[int]) -> list[int]:
    """Plain Huffman code lengths (ties broken by node id, so the result is deterministic)."""
    n = len(counts)
    heap = [(c, i) for i, c in enumerate(counts)]
    heapq.heapify(heap)
    parent = [0] * (2 * n - 1)
    node = n
    while len(heap) > 1:
        c1, a = heapq.heappop(heap)
        c2, b = heapq.heappop(heap)
        parent[a] = parent[b] = node
        heapq.heappush(heap, (c1 + c2, node))
        node += 1
    depth = [0] * (2 * n - 1)
    for i in range(2 * n - 3, -1, -1):
        depth[i] = depth[parent[i]] + 1
    return depth[:n]


def code_lengths(counts: np.ndarray, max_length: int = MAX_CODE_LENGTH) -> np.ndarray:
    """Code lengths (0 for unused symbols) of a Huffman code limited to `max_length` bits.

    Limiting flattens the counts (halving, rounding up, so no used symbol drops out) and rebuilds until the
    longest code fits; the result is still a complete prefix code, and the loss is tiny because only
    codes for very rare symbols are long.
    """
    counts = np.asarray(counts, dtype=np.int64)
    lengths = np.zeros(counts.size, dtype=np.int64)
    used = np.flatnonzero(counts)
    if used.size == 0:
        return lengths
    if used.size == 1:
        lengths[used] = 1
        return lengths
    if used.size > (1 << max_length):
        raise ValueError(f"{used.size} symbols cannot be coded within {max_length} bits")
    c = counts[used]
    while True:
        got = np.asarray(_huffman_lengths(c.tolist()), dtype=np.int64)
        if int(got.max()) <= max_length:
            lengths[used] = got
            return lengths
        c = (c + 1) >> 1


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """Canonical codes for `lengths` (0 = unused): symbols in (length, symbol) order count upward."""
    lengths = np.asarray(lengths, dtype=np.int64)
    codes = np.zeros(lengths.size, dtype=np.uint64)
    used = np.flatnonzero(lengths)
    if used.size == 0:
        return codes
    order = used[np.lexsort((used, lengths[used]))]
    ls = lengths[order]
    top = int(ls.max())
    bl_count = np.bincount(ls, minlength=top + 1)
    bl_count[0] = 0
    first = np.zeros(top + 1, dtype=np.int64)
    code = 0
    for bits in range(1, top + 1):
        code = (code + int(bl_count[bits - 1])) << 1
        first[bits] = code
    group_start = np.searchsorted(ls, ls, side="left")
    rank = np.arange(ls.size) - group_start
    codes[order] = (first[ls] + rank).astype(np.uint64)
    return codes


def _choose_block(count: int, mean_bits: float) -> int:
    """Power-of-two block (64..4096): long enough that a sync entry (~10 bits) costs about 0.3% of the
    block's code bits, short enough that a stream has about 32 blocks or more.

    Decoding takes one vector step per symbol of a block (~20 us of numpy overhead each), so short blocks
    decode small streams fast; long blocks keep the sync points negligible on low-entropy streams.
    """
    block = 64
    while block < DEFAULT_BLOCK and block * mean_bits < 3200 and block * 32 < count:
        block *= 2
    return block


def encode(symbols: np.ndarray, *, block_size: int | None = None, max_length: int = MAX_CODE_LENGTH) -> bytes:
    """Huffman-code a 1-D stream of non-negative integers < 2**24 into a self-describing byte string."""
    s = np.asarray(symbols).ravel()
    if s.size and (not np.issubdtype(s.dtype, np.integer) or int(s.min()) < 0):
        raise ValueError("Huffman symbols must be non-negative integers")
    out = ByteWriter()
    out.varint(s.size)
    if s.size == 0:
        out.varint(0)
        out.u8(MODE_EMPTY)
        return out.getvalue()
    counts = _counts(s)
    alphabet = counts.size
    out.varint(alphabet)
    used = np.flatnonzero(counts)
    if used.size == 1:
        out.u8(MODE_SINGLE)
        return out.getvalue()
    lengths = code_lengths(counts, max_length)
    _write_table(out, lengths, used)
    codes = canonical_codes(lengths)
    total = int(np.dot(counts, lengths))
    # the mean code length exactly as `lengths[s].mean()` gives it (an integer sum below 2**53, one division)
    block = block_size or _choose_block(s.size, total / s.size)
    if not 1 <= block <= MAX_BLOCK:
        raise ValueError(f"block size must lie in [1, {MAX_BLOCK}]")
    step = max(1, _CHUNK // block) * block  # whole blocks per chunk
    block_bits = np.concatenate(
        [
            np.add.reduceat(lengths[s[lo : lo + step]], np.arange(0, min(step, s.size - lo), block))
            for lo in range(0, s.size, step)
        ]
    )
    base = int(block_bits.min())
    sync_width = int(block_bits.max() - base).bit_length()
    data = write_symbols(s, codes, lengths, total)
    out.varint(total)
    out.varint(block)
    out.varint(base)
    out.u8(sync_width)
    out.raw(pack_fixed(block_bits - base, sync_width))
    out.raw(data)
    return out.getvalue()


def _write_table(out: ByteWriter, lengths: np.ndarray, used: np.ndarray) -> None:
    alphabet = lengths.size
    gaps = np.diff(used, prepend=-1) - 1
    gaps[0] = used[0]
    gap_width = max(1, int(gaps.max()).bit_length())
    dense_size = fixed_nbytes(alphabet, _LEN_BITS)
    sparse_size = 4 + fixed_nbytes(used.size, gap_width) + fixed_nbytes(used.size, _LEN_BITS)
    if dense_size <= sparse_size:
        out.u8(MODE_DENSE)
        out.raw(pack_fixed(lengths, _LEN_BITS))
    else:
        out.u8(MODE_SPARSE)
        out.varint(used.size)
        out.u8(gap_width)
        out.raw(pack_fixed(gaps, gap_width))
        out.raw(pack_fixed(lengths[used], _LEN_BITS))


def _read_table(r: ByteReader, alphabet: int, mode: int) -> tuple[np.ndarray, np.ndarray]:
    """(used symbols, their code lengths), validated; nothing is sized by the unverified alphabet alone."""
    if alphabet > MAX_ALPHABET:
        raise FormatError(f"Huffman alphabet {alphabet} exceeds {MAX_ALPHABET}")
    if mode == MODE_DENSE:
        all_lengths = unpack_fixed(r.take(fixed_nbytes(alphabet, _LEN_BITS)), alphabet, _LEN_BITS)
        used = np.flatnonzero(all_lengths)
        lens = all_lengths[used]
    elif mode == MODE_SPARSE:
        n_used = r.varint()
        gap_width = r.u8()
        if not 2 <= n_used <= alphabet or not 1 <= gap_width <= 32:
            raise FormatError(f"bad sparse Huffman table (used={n_used}, width={gap_width})")
        gaps = unpack_fixed(r.take(fixed_nbytes(n_used, gap_width)), n_used, gap_width)
        used = np.cumsum(gaps + 1) - 1
        lens = unpack_fixed(r.take(fixed_nbytes(n_used, _LEN_BITS)), n_used, _LEN_BITS)
        if int(lens.min()) == 0:
            raise FormatError("sparse Huffman table lists a symbol with code length 0")
    else:
        raise FormatError(f"unknown Huffman table mode {mode}")
    if used.size < 2:
        raise FormatError("Huffman table has fewer than two coded symbols")
    if int(used[-1]) != alphabet - 1:
        raise FormatError("Huffman alphabet size does not match its largest coded symbol")
    top = int(lens.max())
    if top > MAX_CODE_LENGTH:
        raise FormatError(f"Huffman code length {top} exceeds {MAX_CODE_LENGTH}")
    kraft = int(np.sum(np.left_shift(1, top - lens)))
    if kraft != 1 << top:
        raise FormatError("Huffman code lengths do not form a complete prefix code (Kraft sum != 1)")
    return used, lens


def parse(data: bytes | ByteReader, *, max_count: int) -> ParsedStream:
    """Read and validate one stream's header, table and sync points; `max_count` caps the declared count.

    Every size is checked against the bytes present before anything proportional to it is allocated.
    """
    r = data if isinstance(data, ByteReader) else ByteReader(data, "Huffman stream")
    count = r.varint()
    alphabet = r.varint()
    mode = r.u8()
    if count > max_count:
        raise FormatError(f"Huffman stream declares {count} symbols, more than the {max_count} allowed")
    if mode == MODE_EMPTY:
        if count or alphabet:
            raise FormatError("empty Huffman stream declares symbols")
        return ParsedStream(0, np.zeros(0, dtype=np.int64))
    if count == 0:
        raise FormatError("Huffman stream of 0 symbols must use the empty mode")
    if mode == MODE_SINGLE:
        if not 1 <= alphabet <= MAX_ALPHABET:
            raise FormatError(f"bad single-symbol alphabet {alphabet}")
        return ParsedStream(count, fill=alphabet - 1)
    used, lens = _read_table(r, alphabet, mode)
    if 1 << int(lens.max()) > TABLE_PER_SYMBOL * count:
        # A Huffman code of length L needs >= Fibonacci(L + 2) symbols, so 2**L <= 60 * count for L <= 20;
        # refusing longer codes bounds the peek tables by the stream's own size.
        raise FormatError(
            f"code length {int(lens.max())} is impossible for a Huffman code of {count} symbols"
        )
    total = r.varint()
    block = r.varint()
    base = r.varint()
    sync_width = r.u8()
    if not 1 <= block <= MAX_BLOCK or sync_width > 32:
        raise FormatError(f"bad Huffman sync layout (block={block}, width={sync_width})")
    if total < count:
        raise FormatError("Huffman stream has fewer bits than symbols")
    nblocks = -(-count // block)
    sync = r.take(fixed_nbytes(nblocks, sync_width))
    payload = r.take((total + 7) // 8)  # present, so nblocks <= count <= total <= 8 * bytes in the file
    block_bits = unpack_fixed(sync, nblocks, sync_width) + base
    if int(block_bits.sum()) != total:
        raise FormatError("Huffman sync points do not add up to the stream's bit count")
    return ParsedStream(count, None, used, lens, block, block_bits, payload)


def parse_exact(data: bytes, count: int) -> ParsedStream:
    """Parse a stream that must hold exactly `count` symbols and fill `data` exactly."""
    r = ByteReader(data, "Huffman stream")
    parsed = parse(r, max_count=count)
    r.expect_end()
    if parsed.count != count:
        raise FormatError(f"Huffman stream holds {parsed.count} symbols, {count} declared")
    return parsed


def decode_parsed(streams: Sequence[ParsedStream]) -> list[np.ndarray]:
    """Decode many parsed streams together: streams sharing a block size (and similar length) run as
    lanes of one lockstep pass, so a model's many tensors cost a few thousand vector steps in all."""
    groups: dict[tuple[int, int], list[ParsedStream]] = {}
    for s in streams:
        if s.fill is not None:
            s.symbols = np.full(s.count, s.fill, dtype=s.dtype)
        elif s.symbols is None:
            span = 1 << (min(s.block, s.count) - 1).bit_length()  # lanes of similar length share a pass
            groups.setdefault((s.block, span), []).append(s)
    for group in groups.values():
        batch: list[ParsedStream] = []
        entries = 0
        for s in group:
            assert s.lens is not None
            size = 1 << int(s.lens.max())
            if batch and entries + size > TABLE_BUDGET:
                _decode_batch(batch)
                batch, entries = [], 0
            batch.append(s)
            entries += size
        _decode_batch(batch)
    return [s.symbols for s in streams]  # type: ignore[misc]


def _decode_batch(batch: list[ParsedStream]) -> None:
    for s, symbols in zip(batch, decode_lanes(batch, [s.dtype for s in batch]), strict=True):
        s.symbols = symbols


def decode(data: bytes | ByteReader, *, max_count: int) -> np.ndarray:
    """Decode one stream written by `encode` (int64 symbols); `max_count` caps the declared count."""
    return decode_parsed([parse(data, max_count=max_count)])[0]
