"""Weight sharing by 1-D k-means: a float32 codebook of at most k entries and one index per weight."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from compression_core.methods.base import StepContext, Work
from compression_core.methods.quantize.kmeans1d import cluster_sorted
from compression_core.methods.quantize.spec import QuantizeStep
from compression_core.records import index_dtype

_CHUNK = 1 << 20  # values converted to float32 at once for the assignment


@dataclass(frozen=True)
class Quantized:
    codebook: torch.Tensor  # float32, sorted, at most k entries
    indices: torch.Tensor  # index_dtype(k), one per value
    stats: dict[str, Any]


def quantize_values(values: torch.Tensor, step: QuantizeStep) -> Quantized:
    """Cluster `values` (any shape, flattened) with the step's k, init, iterations and seed.

    One float32 copy of the values, sorted in place, is all k-means adds beside them (the assignment reads
    the values a chunk at a time); the indices come back as `index_dtype(k)`."""
    flat = values.detach().reshape(-1).cpu()
    xs = flat.to(torch.float32, copy=True).numpy()
    xs.sort()  # what np.sort does to its copy

    def unsorted() -> Iterator[np.ndarray]:
        for lo in range(0, flat.numel(), _CHUNK):
            yield flat[lo : lo + _CHUNK].float().numpy()

    kind = torch.empty(0, dtype=index_dtype(step.k)).numpy().dtype.type
    result = cluster_sorted(
        xs, unsorted, step.k, init=step.init.value, iters=step.iters, seed=step.seed, index_dtype=kind
    )
    del xs
    stats = {
        "k": step.k,
        "codebook_size": int(result.codebook.size),
        "kmeans_sse": result.sse,
        "kmeans_iterations": result.iterations,
        "kmeans_init": step.init.value,
    }
    return Quantized(torch.from_numpy(result.codebook), torch.from_numpy(result.indices), stats)


def apply(step: QuantizeStep, work: Work, ctx: StepContext) -> bool:
    """Code the values left by the previous step (all entries, or the kept ones) with a codebook."""
    if work.values.numel() == 0:
        return False  # nothing kept: the record stores no values at all
    quantized = quantize_values(work.values, step)
    work.record.codebook = quantized.codebook
    work.record.indices = quantized.indices
    work.record.stats.update(quantized.stats)
    return True
