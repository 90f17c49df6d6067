import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.cluster import KMeans

from compression_core.methods.quantize.kmeans1d import _initial_centers, kmeans1d


def brute_sse(x, codebook):
    return float(np.min((x[:, None].astype(np.float64) - codebook[None, :]) ** 2, axis=1).sum())


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 400),
    k=st.integers(1, 40),
    init=st.sampled_from(["linear", "density", "kmeans++"]),
    seed=st.integers(0, 2**16),
    levels=st.sampled_from([None, 5, 50]),
)
def test_codebook_and_assignment_are_consistent(n, k, init, seed, levels):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n).astype(np.float32)
    if levels is not None:
        x = np.round(x * levels) / levels
    result = kmeans1d(x, k, init=init, iters=30, seed=seed)
    cb, idx = result.codebook, result.indices
    assert cb.dtype == np.float32 and idx.dtype == np.int64 and idx.shape == (n,)
    assert 1 <= cb.size <= k
    assert np.all(np.diff(cb) > 0)  # sorted, distinct
    assert set(np.unique(idx)) == set(range(cb.size))  # every entry used
    # Every value sits with its nearest center (up to float32 rounding of the centers).
    nearest = np.min(np.abs(x[:, None] - cb[None, :]), axis=1)
    assert np.all(np.abs(x - cb[idx]) <= nearest + 1e-6)
    assert result.sse == pytest.approx(brute_sse(x, cb), rel=1e-6, abs=1e-9)
    if np.unique(x).size <= k:
        assert result.sse == 0.0 and np.array_equal(cb[idx], x)


def test_deterministic_for_a_seed():
    x = np.random.default_rng(0).standard_normal(20_000).astype(np.float32)
    a = kmeans1d(x, 16, seed=3)
    b = kmeans1d(x, 16, seed=3)
    assert np.array_equal(a.codebook, b.codebook) and np.array_equal(a.indices, b.indices)


def test_centers_are_the_means_of_their_clusters():
    x = np.random.default_rng(1).laplace(size=5000).astype(np.float32)
    r = kmeans1d(x, 8, init="density", iters=500)
    for j, c in enumerate(r.codebook):
        assert c == pytest.approx(x[r.indices == j].astype(np.float64).mean(), rel=1e-5, abs=1e-6)


def test_heavy_duplicates_and_empty_clusters_are_handled():
    x = np.concatenate([np.zeros(10_000), [5.0, 5.1, 9.0, -3.0, -3.0, 7.0]]).astype(np.float32)
    for init in ("linear", "density", "kmeans++"):
        r = kmeans1d(x, 4, init=init)
        assert r.codebook.size == 4  # 5 distinct values > k, so every cluster can be filled
        assert 0.0 in r.codebook  # the 10,000 zeros keep their own exact center
        # Better than any 3-cluster answer ({-3}, {0}, {5, 5.1, 7, 9} costs about 10.7).
        assert r.sse < 3.0


@pytest.mark.parametrize("init", ["linear", "density"])
def test_same_start_gives_scikit_learns_lloyd_result(init):
    x = np.random.default_rng(2).standard_normal(8_000).astype(np.float32)
    ours = kmeans1d(x, 16, init=init, iters=1000)
    start = _initial_centers(np.sort(x).astype(np.float64), 16, init, np.random.default_rng(0))
    theirs = KMeans(16, init=start.reshape(-1, 1), n_init=1, max_iter=1000, tol=0.0).fit(
        x[:, None].astype(np.float64)
    )
    assert ours.sse == pytest.approx(theirs.inertia_, rel=1e-6)
    assert np.allclose(ours.codebook, np.sort(theirs.cluster_centers_.ravel()), atol=1e-5)


def test_kmeans_pp_is_as_good_as_scikit_learns():
    x = np.random.default_rng(2).standard_normal(8_000).astype(np.float32)
    ours = min(kmeans1d(x, 16, init="kmeans++", iters=300, seed=s).sse for s in range(3))
    theirs = KMeans(16, n_init=3, random_state=0).fit(x[:, None].astype(np.float64)).inertia_
    assert ours <= theirs * 1.02


def test_large_k_is_exact_or_better_than_small_k():
    x = np.random.default_rng(3).standard_normal(50_000).astype(np.float32)
    assert kmeans1d(x, 1024).sse < kmeans1d(x, 64).sse < kmeans1d(x, 4).sse


def test_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        kmeans1d(np.array([1.0, np.nan]), 2)
    with pytest.raises(ValueError, match="init"):
        kmeans1d(np.array([1.0, 2.0]), 2, init="random")
    empty = kmeans1d(np.zeros(0), 4)
    assert empty.codebook.size == 0 and empty.indices.size == 0
