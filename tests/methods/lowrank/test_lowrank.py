import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from compression_core.methods.lowrank.apply import factorize, select_rank
from compression_core.methods.lowrank.spec import LowRankStep


def decaying_matrix(m, n, seed=0, decay=0.7):
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(m, m, generator=g))
    v, _ = torch.linalg.qr(torch.randn(n, n, generator=g))
    r = min(m, n)
    s = decay ** torch.arange(r, dtype=torch.float32) * 3
    return (u[:, :r] * s) @ v[:, :r].T, s


@pytest.mark.parametrize("shape", [(30, 20), (8, 3, 3, 3), (5, 40)])
@pytest.mark.parametrize("rank", [1, 2, 5])
def test_rank_is_as_asked_and_factors_are_balanced(shape, rank):
    w = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    f = factorize(w, LowRankStep(rank=rank))
    m = shape[0]
    n = w.numel() // m
    assert f.left.shape == (m, rank) and f.right.shape == (rank, n)
    assert f.left.dtype == f.right.dtype == torch.float32
    assert torch.linalg.matrix_rank(f.left @ f.right) == rank
    # U sqrt(S), sqrt(S) V^T: both factors carry the same column/row norms.
    assert torch.allclose(f.left.norm(dim=0), f.right.norm(dim=1), rtol=1e-4)
    # Eckart-Young: the error is the dropped singular values.
    s = torch.linalg.svdvals(w.reshape(m, n).double())
    err = torch.linalg.norm(w.reshape(m, n).double() - (f.left @ f.right).double())
    assert float(err) == pytest.approx(float(s[rank:].pow(2).sum().sqrt()), rel=1e-4, abs=1e-5)


def test_rank_larger_than_possible_is_capped():
    f = factorize(torch.randn(4, 6), LowRankStep(rank=10))
    assert f.stats["rank"] == 4 and f.stats["max_rank"] == 4


@settings(max_examples=30, deadline=None)
@given(energy=st.floats(0.01, 1.0), seed=st.integers(0, 100))
def test_energy_picks_the_smallest_rank_reaching_the_fraction(energy, seed):
    w, _ = decaying_matrix(12, 9, seed)
    s = torch.linalg.svdvals(w).double()
    r = select_rank(s, 12, 9, LowRankStep(energy=energy))
    total = float((s**2).sum())
    kept = [float((s[:i] ** 2).sum()) / total for i in range(len(s) + 1)]
    expected = next(i for i in range(1, len(s) + 1) if kept[i] >= energy * (1 - 1e-12))
    assert r == expected


@settings(max_examples=40, deadline=None)
@given(
    alpha=st.floats(1e-6, 1.0),
    mu=st.floats(1e-3, 10.0),
    normalize=st.booleans(),
    seed=st.integers(0, 100),
)
def test_alpha_minimizes_the_lc_objective(alpha, mu, normalize, seed):
    m, n = 15, 10
    w, _ = decaying_matrix(m, n, seed)
    s = [float(x) for x in torch.linalg.svdvals(w.double())]
    norm = sum(x * x for x in s) if normalize else 1.0

    def objective(r):  # mu/2 * dropped energy (/||W||^2) + alpha * r (m + n)
        return mu / 2 * sum(x * x for x in s[r:]) / norm + alpha * r * (m + n)

    values = [objective(r) for r in range(len(s) + 1)]
    chosen = select_rank(
        torch.tensor(s, dtype=torch.float64), m, n, LowRankStep(alpha=alpha, mu=mu, normalize=normalize)
    )
    assert values[chosen] <= min(values) * (1 + 1e-9) + 1e-15


def test_alpha_extremes():
    w, _ = decaying_matrix(10, 10)
    assert factorize(w, LowRankStep(alpha=1e-12)).stats["rank"] == 10
    assert factorize(w, LowRankStep(alpha=100.0)).stats["rank"] == 0
