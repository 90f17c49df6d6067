"""Sparse position coding: both layouts round trip, and the encoder keeps the smaller one."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compression_core.coding import positions
from compression_core.errors import FormatError


def roundtrip(p: np.ndarray, numel: int, coding: str) -> positions.CodedPositions:
    coded = positions.encode(p, numel, coding)
    out = positions.decode(
        coded.data,
        layout=coded.layout,
        width=coded.width,
        coding=coded.coding,
        symbols=coded.symbols.size,
        count=p.size,
        numel=numel,
    )
    np.testing.assert_array_equal(out, p)
    return coded


@settings(max_examples=80, deadline=None)
@given(
    st.integers(0, 5000),
    st.floats(0.0, 1.0),
    st.sampled_from(["huffman", "raw"]),
    st.integers(0, 2**32 - 1),
)
def test_roundtrip_any_density(numel: int, density: float, coding: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = np.flatnonzero(rng.random(numel) < density).astype(np.int64)
    roundtrip(p, numel, coding)


@pytest.mark.parametrize("coding", ["huffman", "raw"])
def test_edge_positions(coding: str) -> None:
    roundtrip(np.array([], dtype=np.int64), 0, coding)
    roundtrip(np.array([], dtype=np.int64), 1000, coding)
    roundtrip(np.array([0]), 1, coding)
    roundtrip(np.array([999_999]), 1_000_000, coding)  # one huge gap: fillers
    roundtrip(np.arange(1000), 1000, coding)  # fully dense
    roundtrip(np.array([0, 1, 2, 500_000, 500_001, 999_999]), 1_000_000, coding)


def test_layout_choice_follows_density() -> None:
    rng = np.random.default_rng(0)
    n = 200_000
    sparse = np.flatnonzero(rng.random(n) < 0.02)
    dense = np.flatnonzero(rng.random(n) < 0.9)
    assert roundtrip(sparse, n, "huffman").layout == "gaps"
    assert roundtrip(dense, n, "huffman").layout == "bitmap"
    assert roundtrip(sparse, n, "raw").layout == "gaps"
    assert roundtrip(dense, n, "raw").layout == "gaps"  # width 1: one bit per entry, like a raw bitmap
    assert roundtrip(dense, n, "raw").coding == "raw"


def test_chosen_layout_is_the_smaller() -> None:
    rng = np.random.default_rng(1)
    n = 50_000
    for density in (0.01, 0.08, 0.2, 0.35, 0.6, 0.95):
        p = np.flatnonzero(rng.random(n) < density)
        chosen = positions.encode(p, n, "huffman")
        bitmap = np.packbits(np.isin(np.arange(n), p)).astype(np.int64)
        from compression_core.coding import huffman

        assert len(chosen.data) <= len(huffman.encode(bitmap))


def test_sparse_gaps_near_entropy_bound() -> None:
    rng = np.random.default_rng(2)
    n = 1_000_000
    p = np.flatnonzero(rng.random(n) < 0.1)
    coded = roundtrip(p, n, "huffman")
    # the bound of an i.i.d. Bernoulli(0.1) mask: n * H(0.1)
    h = -(0.1 * np.log2(0.1) + 0.9 * np.log2(0.9)) * n
    assert 8 * len(coded.data) < 1.10 * h


def test_decode_rejects_inconsistent_declarations() -> None:
    p = np.array([3, 9, 40])
    c = positions.encode(p, 100, "raw")
    kw = dict(layout=c.layout, width=c.width, coding=c.coding, symbols=c.symbols.size, numel=100)
    with pytest.raises(FormatError):
        positions.decode(c.data, **{**kw, "count": 4})
    with pytest.raises(FormatError):
        positions.decode(c.data, **{**kw, "numel": 20}, count=3)
    with pytest.raises(FormatError):
        positions.decode(c.data, **{**kw, "layout": "runs"}, count=3)
    with pytest.raises(FormatError):
        positions.decode(c.data, **{**kw, "width": 0}, count=3)
