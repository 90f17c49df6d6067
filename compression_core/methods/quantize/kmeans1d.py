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

Memory (a 4096x11008 bf16 matrix pruned to half keeps 22.5 M values): the sorted values are kept as float32
(the float64 sums are exact either way), the prefix sums whole only up to `_FULL_PREFIX` values and above
that every `_EVERY`-th, the rest re-added on demand in the same order (`_PrefixSums`, so every sum has the
same bits), and the final assignment runs a chunk at a time into `index_dtype`: about 4 bytes per value
beyond the caller's, where float64 copies and prefix arrays took 36.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

INITS = ("linear", "density", "kmeans++")
_SAMPLE_MIN = 1 << 16
_SAMPLE_MAX = 1 << 20
_CHUNK = 1 << 20  # values assigned (or compared) at once
_FULL_PREFIX = 1 << 20  # up to this many values the prefix sums are arrays; above, every _EVERY-th is kept
_EVERY = 64
_ROWS = 4096  # prefix sums re-added at once by `_PrefixSums.at` (rows of _EVERY + 1 float64)

Chunks = Callable[[], Iterable[np.ndarray]]


@dataclass(frozen=True)
class KMeansResult:
    codebook: np.ndarray  # float32, sorted, at most k entries (every entry used)
    indices: np.ndarray  # one per input value, into codebook (int64 unless asked narrower)
    sse: float  # sum of squared errors against the float32 codebook
    iterations: int


def kmeans1d(
    values: np.ndarray,
    k: int,
    *,
    init: str = "kmeans++",
    iters: int = 50,
    seed: int = 0,
    index_dtype: type = np.int64,
) -> KMeansResult:
    """Cluster a 1-D array into at most `k` float32 centers minimizing the squared error."""
    _check(k, init)
    x = np.ascontiguousarray(np.asarray(values, dtype=np.float32).reshape(-1))
    return cluster_sorted(
        np.sort(x), lambda: _chunks(x), k, init=init, iters=iters, seed=seed, index_dtype=index_dtype
    )


def cluster_sorted(
    xs: np.ndarray,
    unsorted: Chunks,
    k: int,
    *,
    init: str = "kmeans++",
    iters: int = 50,
    seed: int = 0,
    index_dtype: type = np.int64,
) -> KMeansResult:
    """`kmeans1d` of values given sorted (`xs`, float32, read only) and in their own order (`unsorted()`
    yields them chunk by chunk, float32): a caller that sorts its own copy in place needs no other."""
    _check(k, init)
    if xs.size == 0:
        return KMeansResult(np.zeros(0, np.float32), np.zeros(0, index_dtype), 0.0, 0)
    if not (np.isfinite(xs[0]) and np.isfinite(xs[-1])):  # sorted: -inf first, +inf and NaN last
        raise ValueError("k-means input contains NaN or infinity")
    if _distinct_count(xs, k + 1) <= k:
        codebook = _distinct_values(xs)
        indices = _assign(unsorted, xs.size, index_dtype, lambda part: np.searchsorted(codebook, part))
        return KMeansResult(codebook, indices, 0.0, 0)

    rng = np.random.default_rng(seed)
    prefix, prefix_sq = _PrefixSums(xs, square=False), _PrefixSums(xs, square=True)
    centers = np.sort(_initial_centers(xs, k, init, rng))
    iterations = 0
    previous_cuts: np.ndarray | None = None
    for iterations in range(1, iters + 1):  # noqa: B007 - the count is reported
        cuts = _lower_bound(xs, (centers[:-1] + centers[1:]) / 2)
        starts = np.concatenate(([0], cuts))
        ends = np.concatenate((cuts, [xs.size]))
        counts = ends - starts
        empty = counts == 0
        if not empty.any() and previous_cuts is not None and np.array_equal(cuts, previous_cuts):
            break
        previous_cuts = cuts
        means = (prefix.at(ends) - prefix.at(starts)) / np.maximum(counts, 1)
        centers = np.where(empty, centers, means)
        if empty.any():
            centers = _refill_empty(centers, empty, xs, starts, ends, prefix, prefix_sq)
        centers = np.sort(centers)

    codebook, indices = _final_assignment(unsorted, xs, centers, prefix, index_dtype)
    sse = _sse(xs, codebook, prefix, prefix_sq)
    return KMeansResult(codebook, indices, sse, iterations)


def _check(k: int, init: str) -> None:
    if k < 1:
        raise ValueError("k must be at least 1")
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; expected one of {INITS}")


def _chunks(x: np.ndarray) -> Iterable[np.ndarray]:
    return (x[lo : lo + _CHUNK] for lo in range(0, x.size, _CHUNK))


def _wide(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float64)


def _distinct_count(xs: np.ndarray, limit: int) -> int:
    """Distinct values of sorted `xs`, counted up to `limit` (then it stops)."""
    found = 1
    for lo in range(0, xs.size - 1, _CHUNK):
        part = xs[lo : lo + _CHUNK + 1]
        found += int(np.count_nonzero(part[1:] != part[:-1]))
        if found >= limit:
            break
    return found


def _distinct_values(xs: np.ndarray) -> np.ndarray:
    """The distinct values of sorted `xs` (each run's first), float32."""
    parts = [xs[:1]]
    for lo in range(0, xs.size - 1, _CHUNK):
        part = xs[lo : lo + _CHUNK + 1]
        parts.append(part[1:][part[1:] != part[:-1]])
    return np.concatenate(parts).astype(np.float32)


def _assign(
    unsorted: Chunks, n: int, index_dtype: type, which: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    indices: np.ndarray = np.empty(n, dtype=index_dtype)
    at = 0
    for part in unsorted():
        indices[at : at + part.size] = which(part)
        at += part.size
    assert at == n
    return indices


def _lower_bound(xs: np.ndarray, v: np.ndarray) -> np.ndarray:
    """`np.searchsorted(xs, v, side="left")` for float64 `v` without widening a float32 `xs` (numpy would
    copy it to float64): a float32 x is >= v exactly when it is >= the smallest float32 not below v."""
    if xs.dtype != np.float32:
        return np.searchsorted(xs, v, side="left")
    v = np.asarray(v, dtype=np.float64)
    narrow = v.astype(np.float32)
    below = narrow.astype(np.float64) < v
    narrow[below] = np.nextafter(narrow[below], np.float32(np.inf))
    return np.searchsorted(xs, narrow, side="left")


class _PrefixSums:
    """prefix[i] = the first i values of sorted `xs` (or their squares) in float64, added one after another
    as `np.cumsum` adds them. Whole up to `_FULL_PREFIX` values; above, only every `_EVERY`-th is kept and
    `at` re-adds the rest from there in the same order, so each sum has the same bits as the whole array's.
    """

    def __init__(self, xs: np.ndarray, *, square: bool) -> None:
        self.xs, self.square = xs, square
        if xs.size <= _FULL_PREFIX:
            self.full: np.ndarray | None = np.concatenate(([0.0], np.cumsum(self._terms(xs))))
            return
        self.full = None
        self.marks = np.empty(xs.size // _EVERY + 1)
        self.marks[0] = 0.0
        carry = -0.0  # -0.0 + t == t for every t: the first sum is the first term, as in cumsum
        step = _CHUNK // _EVERY * _EVERY
        for lo in range(0, xs.size, step):
            terms = self._terms(xs[lo : lo + step])
            terms[0] += carry
            sums = np.cumsum(terms)
            marks = sums[_EVERY - 1 :: _EVERY]
            self.marks[lo // _EVERY + 1 : lo // _EVERY + 1 + marks.size] = marks
            carry = float(sums[-1])

    def _terms(self, values: np.ndarray) -> np.ndarray:
        wide = _wide(values)
        return wide * wide if self.square else wide

    def at(self, index: np.ndarray) -> np.ndarray:
        """prefix[index] (float64) for an integer array `index` in [0, len(xs)]."""
        if self.full is not None:
            return self.full[index]
        index = np.asarray(index, dtype=np.int64)
        base = index // _EVERY
        rest = index - base * _EVERY
        out = self.marks[base]
        todo = np.flatnonzero(rest)
        columns = np.arange(_EVERY)
        for lo in range(0, todo.size, _ROWS):
            rows = todo[lo : lo + _ROWS]
            first = base[rows] * _EVERY
            where = np.minimum(first[:, None] + columns, self.xs.size - 1)
            start = np.where(first == 0, -0.0, self.marks[base[rows]])
            sums = np.cumsum(np.concatenate((start[:, None], self._terms(self.xs[where])), axis=1), axis=1)
            out[rows] = sums[np.arange(rows.size), rest[rows]]
        return out


def _final_assignment(
    unsorted: Chunks, xs: np.ndarray, centers: np.ndarray, prefix: _PrefixSums, index_dtype: type
) -> tuple[np.ndarray, np.ndarray]:
    """Assign by midpoints, drop empty clusters, codebook = float32 means of the final clusters."""
    bounds = (centers[:-1] + centers[1:]) / 2
    cuts = _lower_bound(xs, bounds)
    starts = np.concatenate(([0], cuts))
    ends = np.concatenate((cuts, [xs.size]))
    counts = ends - starts
    used = counts > 0
    means = (prefix.at(ends) - prefix.at(starts))[used] / counts[used]
    # Clamp into each cluster's range so rounding can never move a center past its neighbours.
    means = np.clip(means, _wide(xs[starts[used]]), _wide(xs[ends[used] - 1]))
    remap = np.cumsum(used) - 1
    indices = _assign(
        unsorted, xs.size, index_dtype, lambda part: remap[np.searchsorted(bounds, _wide(part), side="right")]
    )
    return means.astype(np.float32), indices


def _sse(xs: np.ndarray, codebook: np.ndarray, prefix: _PrefixSums, prefix_sq: _PrefixSums) -> float:
    """Squared error of the sorted data against the nearest float32 center, via prefix sums."""
    c = codebook.astype(np.float64)
    cuts = _lower_bound(xs, (c[:-1] + c[1:]) / 2)
    starts = np.concatenate(([0], cuts))
    ends = np.concatenate((cuts, [xs.size]))
    s1 = prefix.at(ends) - prefix.at(starts)
    s2 = prefix_sq.at(ends) - prefix_sq.at(starts)
    return float(max(np.sum(s2 - 2 * c * s1 + (ends - starts) * c * c), 0.0))


def _refill_empty(
    centers: np.ndarray,
    empty: np.ndarray,
    xs: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    prefix: _PrefixSums,
    prefix_sq: _PrefixSums,
) -> np.ndarray:
    """Move each empty center to the far end of one of the clusters with the largest squared error."""
    counts = ends - starts
    s1 = prefix.at(ends) - prefix.at(starts)
    sse = (prefix_sq.at(ends) - prefix_sq.at(starts)) - s1 * s1 / np.maximum(counts, 1)
    spread = _wide(xs[np.maximum(ends - 1, 0)]) - _wide(xs[np.minimum(starts, xs.size - 1)])
    sse = np.where((counts > 1) & (spread > 0), sse, -1.0)
    holes = np.flatnonzero(empty)
    donors = np.argsort(-sse, kind="stable")[: holes.size]
    donors = donors[sse[donors] > 0]
    centers = centers.copy()
    for hole, donor in zip(holes, donors, strict=False):
        lo, hi = float(xs[starts[donor]]), float(xs[ends[donor] - 1])
        mean = centers[donor]
        centers[hole] = hi if hi - mean >= mean - lo else lo
    return centers


def _initial_centers(xs: np.ndarray, k: int, init: str, rng: np.random.Generator) -> np.ndarray:
    """float64 starting centers from sorted `xs` (float32 or float64)."""
    if init == "linear":
        return np.linspace(float(xs[0]), float(xs[-1]), k)
    if init == "density":
        return _wide(xs[((np.arange(k) + 0.5) / k * xs.size).astype(np.int64)])
    return _kmeans_pp(xs, k, rng)


def _kmeans_pp(xs: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """D^2 seeding on a sorted sample; range updates + block sums keep each draw cheap."""
    size = min(xs.size, max(_SAMPLE_MIN, min(16 * k, _SAMPLE_MAX)))
    sample = _wide(xs if size == xs.size else np.sort(xs[rng.integers(0, xs.size, size)]))
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
