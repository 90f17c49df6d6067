"""Canonical Huffman: round trips, code validity, length limits, size against the entropy bound."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compression_core.coding import huffman, raw
from compression_core.coding.bitio import ByteReader, ByteWriter, pack_fixed, write_codes
from compression_core.errors import FormatError


def roundtrip(symbols: np.ndarray, **kw: int) -> bytes:
    data = huffman.encode(symbols, **kw)
    out = huffman.decode(data, max_count=max(symbols.size, 1))
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, symbols)
    return data


@pytest.mark.parametrize("n", [0, 1, 2, 7, 4095, 4096, 4097, 3 * 4096 + 5, 50_000])
@pytest.mark.parametrize("k", [1, 2, 3, 16, 257, 5000])
def test_roundtrip_sizes(n: int, k: int) -> None:
    rng = np.random.default_rng(n * 31 + k)
    roundtrip(rng.integers(0, k, n))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 2**16 + 5), min_size=0, max_size=300),
    st.sampled_from([1, 3, 64, 4096]),
)
def test_roundtrip_hypothesis(values: list[int], block: int) -> None:
    roundtrip(np.asarray(values, dtype=np.int64), block_size=block)


def test_skewed_geometric_stream_is_near_entropy() -> None:
    rng = np.random.default_rng(1)
    p = 0.5 ** np.arange(1, 21)
    s = rng.choice(20, 200_000, p=p / p.sum())
    data = roundtrip(s)
    bound = huffman.entropy_bits(s)
    # dyadic probabilities: Huffman is optimal, so only table + sync points + padding may be added
    assert 8 * len(data) <= bound * 1.01 + 400


def test_size_within_margin_of_entropy_on_kmeans_like_stream() -> None:
    rng = np.random.default_rng(2)
    p = np.exp(-np.arange(16) / 3.0)
    s = rng.choice(16, 100_000, p=p / p.sum())
    data = roundtrip(s)
    bound = huffman.entropy_bits(s)
    assert bound <= 8 * len(data) <= bound * 1.03 + 400


def test_entropy_bits_values() -> None:
    assert huffman.entropy_bits(np.array([], dtype=np.int64)) == 0.0
    assert huffman.entropy_bits(np.zeros(10, dtype=np.int64)) == 0.0
    assert huffman.entropy_bits(np.array([0, 1, 0, 1])) == pytest.approx(4.0)
    assert huffman.entropy_bits(np.array([0, 1, 2, 3])) == pytest.approx(8.0)


def is_prefix_free(codes: list[int], lengths: list[int]) -> bool:
    words = sorted(format(c, f"0{n}b") for c, n in zip(codes, lengths, strict=True))
    return all(not b.startswith(a) for a, b in zip(words, words[1:], strict=False))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 10**6), min_size=2, max_size=200), st.integers(8, 20))
def test_lengths_are_complete_prefix_code_within_limit(counts: list[int], max_len: int) -> None:
    c = np.asarray(counts)
    if np.count_nonzero(c) > (1 << max_len):
        return
    lengths = huffman.code_lengths(c, max_len)
    used = np.flatnonzero(c)
    assert np.array_equal(np.flatnonzero(lengths), used)
    if used.size >= 2:
        assert int(lengths.max()) <= max_len
        # the decoder's bound: a Huffman code of length L needs >= Fibonacci(L + 2) symbols
        assert 2 ** int(lengths.max()) <= huffman.TABLE_PER_SYMBOL * int(c.sum())
        assert sum(2.0 ** -lengths[used]) == pytest.approx(1.0)  # complete (Kraft equality)
        codes = huffman.canonical_codes(lengths)
        assert is_prefix_free(codes[used].tolist(), lengths[used].tolist())


def test_length_limit_is_applied_to_fibonacci_counts() -> None:
    fib = [1, 1]
    while len(fib) < 40:
        fib.append(fib[-1] + fib[-2])
    unlimited = huffman.code_lengths(np.asarray(fib), max_length=64)
    assert int(unlimited.max()) == 39  # Fibonacci counts give the deepest possible tree
    limited = huffman.code_lengths(np.asarray(fib), max_length=20)
    assert int(limited.max()) <= 20
    s = np.repeat(np.arange(40), np.minimum(fib, 2000))
    roundtrip(s)


def test_canonical_codes_known_example() -> None:
    # lengths from RFC 1951 section 3.2.2: A..H = 3 3 3 3 3 2 4 4
    lengths = np.array([3, 3, 3, 3, 3, 2, 4, 4])
    assert huffman.canonical_codes(lengths).tolist() == [2, 3, 4, 5, 6, 0, 14, 15]


def test_huge_sparse_alphabet_table_stays_small() -> None:
    s = np.array([0, 1_000_000, 5, 5, 5, 1_000_000] * 10)
    data = roundtrip(s)
    assert len(data) < 60  # sparse table: three symbols, not a million code lengths


def test_single_symbol_stream_costs_no_bits() -> None:
    data = roundtrip(np.full(1_000_000, 7))
    assert len(data) == 5  # count (3-byte varint) + alphabet + mode


def test_rejects_negative_and_float_symbols() -> None:
    with pytest.raises(ValueError):
        huffman.encode(np.array([1, -1]))
    with pytest.raises(ValueError):
        huffman.encode(np.array([1.5, 2.0]))


def forge(
    *,
    count: int = 6,
    alphabet: int = 3,
    mode: int = huffman.MODE_DENSE,
    lengths: list[int] | None = None,
    total: int | None = None,
    block: int = 64,
    base: int | None = None,
    width: int = 0,
    sync: bytes = b"",
    code_bits: bytes | None = None,
) -> bytes:
    """A hand-built stream for symbols [0, 1, 2, 2, 2, 2] (lengths 2 2 1), every field overridable."""
    lengths = [2, 2, 1] if lengths is None else lengths
    w = ByteWriter()
    w.varint(count)
    w.varint(alphabet)
    w.u8(mode)
    w.raw(pack_fixed(np.asarray(lengths), 5))
    w.varint(8 if total is None else total)
    w.varint(block)
    w.varint(8 if base is None else base)
    w.u8(width)
    w.raw(sync)
    # canonical codes: 2 -> 0, 0 -> 10, 1 -> 11: bits 10 11 0 0 0 0 = 0xB0
    w.raw(b"\xb0" if code_bits is None else code_bits)
    return w.getvalue()


def test_forged_stream_matches_the_encoder() -> None:
    s = np.array([0, 1, 2, 2, 2, 2])
    assert huffman.encode(s) == forge()
    np.testing.assert_array_equal(huffman.decode(forge(), max_count=6), s)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"lengths": [2, 2, 2]}, "prefix code"),  # Kraft sum 3/4: not complete
        ({"lengths": [1, 1, 1]}, "prefix code"),  # Kraft sum 3/2: not a prefix code
        ({"lengths": [0, 0, 3]}, "fewer than two"),
        ({"lengths": [21, 21, 1]}, "exceeds"),
        ({"count": 3, "alphabet": 9, "lengths": [1, 2, 3, 4, 5, 6, 7, 8, 8]}, "impossible"),  # 256 > 64 * 3
        ({"lengths": [1, 1, 0]}, "alphabet size"),
        ({"mode": 7}, "mode"),
        ({"alphabet": 2**30}, "alphabet"),
        ({"count": 2**60}, "allowed"),
        ({"count": 0}, "empty"),
        ({"total": 5}, "fewer bits"),
        ({"total": 2**40}, "more bytes"),
        ({"block": 0}, "sync"),
        ({"block": 2**20}, "sync"),
        ({"width": 33}, "sync"),
        ({"base": 9}, "sync points"),
        ({"code_bits": b"\xff"}, "sync points"),  # 11 11 11 11 then padding: 10 bits, not 8
        ({"code_bits": b""}, "more bytes"),
    ],
)
def test_forged_streams_are_rejected(fields: dict, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        huffman.decode(forge(**fields), max_count=10**9 if "count" not in fields else 10**6)


def test_varint_reader_rejects_overlong_and_oversized() -> None:
    for data in (b"\x80\x00", b"\xff" * 9 + b"\x01", b"\x80"):
        with pytest.raises(FormatError):
            ByteReader(data).varint()
    with pytest.raises(FormatError, match="exceeds"):
        ByteReader(b"\x80\x01").varint(limit=100)
    for v in (0, 1, 127, 128, 2**35, 2**63 - 1):
        w = ByteWriter()
        w.varint(v)
        assert ByteReader(w.getvalue()).varint() == v


def test_truncated_streams_raise_format_error() -> None:
    data = huffman.encode(np.random.default_rng(0).integers(0, 50, 5000))
    for cut in range(len(data)):
        with pytest.raises(FormatError):
            r = ByteReader(data[:cut])
            huffman.decode(r, max_count=5000)
            r.expect_end()


def test_bit_flips_in_payload_are_detected_or_harmless() -> None:
    rng = np.random.default_rng(3)
    s = rng.integers(0, 9, 20_000)
    data = huffman.encode(s)
    for _ in range(100):
        bad = bytearray(data)
        i = int(rng.integers(0, len(bad)))
        bad[i] ^= 1 << int(rng.integers(0, 8))
        try:
            out = huffman.decode(bytes(bad), max_count=20_000)
        except FormatError:
            continue
        assert out.size <= 20_000 and (out.size == 0 or int(out.min()) >= 0)


@pytest.mark.parametrize("width", [0, 1, 3, 8, 13, 20, 32])
def test_fixed_width_roundtrip(width: int) -> None:
    rng = np.random.default_rng(width)
    v = rng.integers(0, 1 << width, 1001, dtype=np.int64) if width else np.zeros(1001, dtype=np.int64)
    data = raw.encode(v, width)
    assert len(data) == (1001 * width + 7) // 8
    np.testing.assert_array_equal(raw.decode(data, 1001, width), v)
    with pytest.raises(FormatError):
        raw.decode(data + b"\0", 1001, width)


def test_write_codes_matches_string_concatenation() -> None:
    rng = np.random.default_rng(5)
    lengths = rng.integers(0, 33, 3000)
    masks = (np.uint64(1) << lengths.astype(np.uint64)) - np.uint64(1)
    codes = rng.integers(0, 1 << 32, 3000, dtype=np.uint64) & masks
    data, total = write_codes(codes, lengths)
    bits = "".join(format(int(c), f"0{n}b") if n else "" for c, n in zip(codes, lengths, strict=True))
    assert total == len(bits)
    expect = int(bits + "0" * (-len(bits) % 8), 2).to_bytes((len(bits) + 7) // 8, "big")
    assert data == expect


def test_raw_width_for() -> None:
    assert [raw.width_for(k) for k in (0, 1, 2, 3, 4, 5, 16, 17, 256)] == [0, 0, 1, 2, 2, 3, 4, 5, 8]


def test_sparse_table_of_a_huge_alphabet_decodes_in_little_memory() -> None:
    import tracemalloc

    s = np.tile(np.array([0, huffman.MAX_ALPHABET - 1, 5]), 100)
    data = huffman.encode(s)
    assert len(data) < 120  # 300 codes of ~1.7 bits plus a three-entry table
    tracemalloc.start()
    try:
        np.testing.assert_array_equal(huffman.decode(data, max_count=300), s)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20  # nothing sized by the 2**24-symbol alphabet


def test_batched_decoding_of_many_streams_matches_one_by_one() -> None:
    rng = np.random.default_rng(7)
    streams = []
    for i in range(40):
        n = int(rng.integers(0, 20_000)) if i % 5 else int(rng.integers(0, 40))
        k = int(rng.integers(1, 300))
        p = np.exp(-np.arange(k) / max(1.0, k / 5))
        s = rng.choice(k, n, p=p / p.sum())
        block = [None, 64, 100, 4096][i % 4]
        streams.append((s, huffman.encode(s, block_size=block)))
    parsed = [huffman.parse(data, max_count=s.size) for s, data in streams]
    for (s, _), out in zip(streams, huffman.decode_parsed(parsed), strict=True):
        np.testing.assert_array_equal(out, s)


def test_one_corrupted_stream_fails_the_batch() -> None:
    rng = np.random.default_rng(8)
    good = [huffman.encode(rng.integers(0, 9, 5000)) for _ in range(3)]
    bad = bytearray(good[1])
    bad[-30:] = bytes(30)
    parsed = [huffman.parse(d, max_count=5000) for d in (good[0], bytes(bad), good[2])]
    with pytest.raises(FormatError, match="sync"):
        huffman.decode_parsed(parsed)


def test_batches_split_at_the_table_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(huffman, "TABLE_BUDGET", 64)  # forces one lockstep pass per stream or two
    rng = np.random.default_rng(9)
    streams = [rng.integers(0, int(rng.integers(2, 100)), 3000) for _ in range(12)]
    parsed = [huffman.parse(huffman.encode(s), max_count=3000) for s in streams]
    for s, out in zip(streams, huffman.decode_parsed(parsed), strict=True):
        np.testing.assert_array_equal(out, s)
