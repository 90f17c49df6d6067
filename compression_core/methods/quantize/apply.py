"""Weight sharing by 1-D k-means: a float32 codebook of at most k entries and one index per weight."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from compression_core.methods.base import StepContext, Work
from compression_core.methods.quantize.kmeans1d import kmeans1d
from compression_core.methods.quantize.spec import QuantizeStep


@dataclass(frozen=True)
class Quantized:
    codebook: torch.Tensor  # float32, sorted, at most k entries
    indices: torch.Tensor  # int64, one per value
    stats: dict[str, Any]


def quantize_values(values: torch.Tensor, step: QuantizeStep) -> Quantized:
    """Cluster `values` (any shape, flattened) with the step's k, init, iterations and seed."""
    flat = values.detach().reshape(-1).float().cpu().numpy()
    result = kmeans1d(flat, step.k, init=step.init.value, iters=step.iters, seed=step.seed)
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
