"""Shared record builders for the format tests."""

from __future__ import annotations

import numpy as np
import torch

from compression_core.records import TensorRecord

FLOAT_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]


def make_record(
    name: str,
    shape: tuple[int, ...],
    dtype: torch.dtype,
    kind: str,
    *,
    seed: int = 0,
    density: float = 0.3,
    k: int = 16,
    rank: int = 2,
    encoding: str = "huffman",
) -> TensorRecord:
    """A record of `kind` (dense, sparse, codebook, sparse_codebook, lowrank) with random content."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape)) if shape else 1
    rec = TensorRecord(name, shape, dtype, encoding=encoding, method=kind, stats={"seed": seed})
    if kind == "dense":
        if dtype.is_floating_point:
            rec.values = torch.from_numpy(rng.standard_normal(n)).to(dtype)
        elif dtype == torch.bool:
            rec.values = torch.from_numpy(rng.integers(0, 2, n).astype(bool))
        else:
            rec.values = torch.from_numpy(rng.integers(0, 100, n)).to(dtype)
        return rec
    if kind == "lowrank":
        rows = shape[0] if shape else 1
        cols = n // rows if rows else 0
        rec.factors = (
            torch.from_numpy(rng.standard_normal((rows, rank)).astype(np.float32)),
            torch.from_numpy(rng.standard_normal((rank, cols)).astype(np.float32)),
        )
        return rec
    kept = n
    if kind in ("sparse", "sparse_codebook"):
        pos = np.flatnonzero(rng.random(n) < density)
        rec.positions = torch.from_numpy(pos.astype(np.int64))
        kept = pos.size
    if kind in ("codebook", "sparse_codebook"):
        rec.codebook = torch.from_numpy(rng.standard_normal(k).astype(np.float32))
        probs = np.exp(-np.arange(k) / max(k / 4, 1))
        rec.indices = torch.from_numpy(rng.choice(k, kept, p=probs / probs.sum()).astype(np.int64))
    else:
        rec.values = torch.from_numpy(rng.standard_normal(kept)).to(dtype)
    return rec


def raw_bytes(t: torch.Tensor) -> torch.Tensor:
    if t.numel() == 0:
        return torch.zeros(0, dtype=torch.uint8)
    return t.contiguous().reshape(-1).view(torch.uint8)


def assert_same(a: TensorRecord, b: TensorRecord) -> None:
    """Bit-for-bit equality of the reconstructed tensors, plus name, shape and dtype."""
    x, y = a.reconstruct(), b.reconstruct()
    assert (a.name, a.shape, a.dtype) == (b.name, b.shape, b.dtype)
    assert x.dtype == y.dtype and x.shape == y.shape
    assert torch.equal(raw_bytes(x), raw_bytes(y))
