"""Fast 1-D k-means (Lloyd) for weight sharing.

In one dimension the clusters of sorted centers are contiguous runs of the sorted data, split at the
midpoints between neighbouring centers. So after one sort, an iteration is `searchsorted` of the k-1
midpoints plus prefix-sum differences: O(k log n), independent of n. The final assignment of the
unsorted values is one `searchsorted` over the midpoints (O(n log k)).

Initializations (Han et al., Deep Compression, compare the first two):
- `linear`: k centers evenly spaced between min and max.
- `density`: the quantiles (i + 0.5) / k of the data, i.e. evenly spaced on the CDF.
- `kmeans++`: D^2 seeding (Arthur & Vassilvitskii) on a sorted random sample; because the data are 1-D
  and sorted, a new center only changes the distances of a contiguous run, and sampling uses block sums,
  so seeding costs about O(k (sqrt(S) + S/k)) for a sample of S points instead of O(k S).
Empty clusters are refilled by splitting the cluster with the largest squared error. When the data have
at most k distinct values the result is exact (codebook = the distinct values).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

INITS = ("linear", "density", "kmeans++")
_SAMPLE_MIN = 1 << 16
_SAMPLE_MAX = 1 << 20


@dataclass(frozen=True)
class KMeansResult:
    codebook: np.ndarray  # float32, sorted, at most k entries (every entry used)
    indices: np.ndarray  # int64, one per input value, into codebook
    sse: float  # sum of squared errors against the float32 codebook
    iterations: int


def kmeans1d(
    values: np.ndarray, k: int, *, init: str = "kmeans++", iters: int = 50, seed: int = 0
) -> KMeansResult:
    """Cluster a 1-D array into at most `k` float32 centers minimizing the squared error."""
    if k < 1:
        raise ValueError("k must be at least 1")
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; expected one of {INITS}")
    x = np.ascontiguousarray(np.asarray(values, dtype=np.float32).reshape(-1))
    if x.size == 0:
        return KMeansResult(np.zeros(0, np.float32), np.zeros(0, np.int64), 0.0, 0)
    if not np.isfinite(x).all():
        raise ValueError("k-means input contains NaN or infinity")
    xs = np.sort(x).astype(np.float64)
    distinct = np.concatenate(([True], xs[1:] != xs[:-1]))
    if int(distinct.sum()) <= k:
        codebook = xs[distinct].astype(np.float32)
        return KMeansResult(codebook, np.searchsorted(codebook, x).astype(np.int64), 0.0, 0)

    rng = np.random.default_rng(seed)
    prefix = np.concatenate(([0.0], np.cumsum(xs)))
    prefix_sq = np.concatenate(([0.0], np.cumsum(xs * xs)))
    centers = np.sort(_initial_centers(xs, k, init, rng))
    iterations = 0
    previous_cuts: np.ndarray | None = None
    for iterations in range(1, iters + 1):  # noqa: B007 - the count is reported
        cuts = np.searchsorted(xs, (centers[:-1] + centers[1:]) / 2, side="left")
        starts = np.concatenate(([0], cuts))
        ends = np.concatenate((cuts, [xs.size]))
        counts = ends - starts
        empty = counts == 0
        if not empty.any() and previous_cuts is not None and np.array_equal(cuts, previous_cuts):
            break
        previous_cuts = cuts
        means = (prefix[ends] - prefix[starts]) / np.maximum(counts, 1)
        centers = np.where(empty, centers, means)
        if empty.any():
            centers = _refill_empty(centers, empty, xs, starts, ends, prefix, prefix_sq)
        centers = np.sort(centers)

    codebook, indices = _final_assignment(x, xs, centers, prefix)
    sse = _sse(xs, codebook, prefix, prefix_sq)
    return KMeansResult(codebook, indices, sse, iterations)


def _final_assignment(
    x: np.ndarray, xs: np.ndarray, centers: np.ndarray, prefix: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Assign by midpoints, drop empty clusters, codebook = float32 means of the final clusters."""
    bounds = (centers[:-1] + centers[1:]) / 2
    cuts = np.searchsorted(xs, bounds, side="left")
    starts = np.concatenate(([0], cuts))
    ends = np.concatenate((cuts, [xs.size]))
    counts = ends - starts
    used = counts > 0
    means = (prefix[ends] - prefix[starts])[used] / counts[used]
    # Clamp into each cluster's range so rounding can never move a center past its neighbours.
    means = np.clip(means, xs[starts[used]], xs[ends[used] - 1])
    raw = np.searchsorted(bounds, x.astype(np.float64), side="right")
    remap = np.cumsum(used) - 1
    return means.astype(np.float32), remap[raw].astype(np.int64)


def _sse(xs: np.ndarray, codebook: np.ndarray, prefix: np.ndarray, prefix_sq: np.ndarray) -> float:
    """Squared error of the sorted data against the nearest float32 center, via prefix sums."""
    c = codebook.astype(np.float64)
    cuts = np.searchsorted(xs, (c[:-1] + c[1:]) / 2, side="left")
    starts = np.concatenate(([0], cuts))
    ends = np.concatenate((cuts, [xs.size]))
    s1 = prefix[ends] - prefix[starts]
    s2 = prefix_sq[ends] - prefix_sq[starts]
    return float(max(np.sum(s2 - 2 * c * s1 + (ends - starts) * c * c), 0.0))


def _refill_empty(
    centers: np.ndarray,
    empty: np.ndarray,
    xs: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    prefix: np.ndarray,
    prefix_sq: np.ndarray,
) -> np.ndarray:
    """Move each empty center to the far end of one of the clusters with the largest squared error."""
    counts = ends - starts
    s1 = prefix[ends] - prefix[starts]
    sse = (prefix_sq[ends] - prefix_sq[starts]) - s1 * s1 / np.maximum(counts, 1)
    spread = xs[np.maximum(ends - 1, 0)] - xs[np.minimum(starts, xs.size - 1)]
    sse = np.where((counts > 1) & (spread > 0), sse, -1.0)
    holes = np.flatnonzero(empty)
    donors = np.argsort(-sse, kind="stable")[: holes.size]
    donors = donors[sse[donors] > 0]
    centers = centers.copy()
    for hole, donor in zip(holes, donors, strict=False):
        lo, hi = xs[starts[donor]], xs[ends[donor] - 1]
        mean = centers[donor]
        centers[hole] = hi if hi - mean >= mean - lo else lo
    return centers


def _initial_centers(xs: np.ndarray, k: int, init: str, rng: np.random.Generator) -> np.ndarray:
    if init == "linear":
        return np.linspace(xs[0], xs[-1], k)
    if init == "density":
        return xs[((np.arange(k) + 0.5) / k * xs.size).astype(np.int64)]
    return _kmeans_pp(xs, k, rng)


def _kmeans_pp(xs: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """D^2 seeding on a sorted sample; range updates + block sums keep each draw cheap."""
    size = min(xs.size, max(_SAMPLE_MIN, min(16 * k, _SAMPLE_MAX)))
    sample = xs if size == xs.size else np.sort(xs[rng.integers(0, xs.size, size)])
    block = max(int(np.sqrt(size)), 16)
    blocks = -(-size // block)
    d2 = np.zeros(blocks * block)
    first = sample[rng.integers(0, size)]
    d2[:size] = (sample - first) ** 2
    block_sums = d2.reshape(blocks, block).sum(axis=1)
    chosen = [float(first)]
    while len(chosen) < k:
        cumulative = np.cumsum(block_sums)
        total = cumulative[-1]
        if total <= 0:
            break  # every sample point is a center already; Lloyd's refill handles the rest
        target = rng.random() * total
        b = min(int(np.searchsorted(cumulative, target, side="right")), blocks - 1)
        within = np.cumsum(d2[b * block : (b + 1) * block])
        offset = target - (cumulative[b - 1] if b else 0.0)
        i = min(b * block + int(np.searchsorted(within, offset, side="right")), size - 1)
        if d2[i] <= 0:  # rounding landed on a zero-weight point: take the heaviest point of the block
            i = b * block + int(np.argmax(d2[b * block : (b + 1) * block]))
            i = min(i, size - 1)
        center = float(sample[i])
        pos = bisect.bisect_left(chosen, center)
        lo_bound = (chosen[pos - 1] + center) / 2 if pos > 0 else -np.inf
        hi_bound = (center + chosen[pos]) / 2 if pos < len(chosen) else np.inf
        chosen.insert(pos, center)
        lo = int(np.searchsorted(sample, lo_bound, side="left"))
        hi = int(np.searchsorted(sample, hi_bound, side="right"))
        if hi > lo:
            d2[lo:hi] = np.minimum(d2[lo:hi], (sample[lo:hi] - center) ** 2)
            b0, b1 = lo // block, (hi - 1) // block + 1
            block_sums[b0:b1] = d2[b0 * block : b1 * block].reshape(-1, block).sum(axis=1)
    centers = np.array(chosen)
    if centers.size < k:  # pad with duplicates; they start empty and get refilled
        centers = np.concatenate((centers, np.full(k - centers.size, centers[-1])))
    return centers
