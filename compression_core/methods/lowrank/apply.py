"""Low-rank compression by truncated SVD of the matrix view W (m x n) = U diag(s) V^T.

The rank r is chosen one of three ways:
- `rank`: r = min(rank, min(m, n)).
- `energy`: the smallest r with sum_{i<=r} s_i^2 >= energy * sum_i s_i^2.
- `alpha` (the C step of Idelbayev & Carreira-Perpiñán, "Low-rank compression of neural nets: learning the
  rank of each layer", CVPR 2020, as in the LC toolkit's rank selection with the storage criterion):

      r* = argmin_{0 <= r <= min(m, n)}  alpha * C(r) + mu / 2 * E(r) / N,
      C(r) = r * (m + n)            (storage: number of factor entries, in parameters),
      E(r) = sum_{i > r} s_i^2      (squared Frobenius error of the best rank-r approximation),
      N    = ||W||_F^2 when `normalize`, else 1.

  Ties go to the smallest r. Larger alpha (or smaller mu) gives lower ranks. In the LC algorithm mu grows
  during training; data-free, mu is a fixed choice (default 1).
The factors are stored as U_r sqrt(s_r) (m x r) and sqrt(s_r) V_r^T (r x n), both float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from compression_core.errors import SpecError
from compression_core.methods.base import StepContext, Work
from compression_core.methods.lowrank.spec import LowRankStep
from compression_core.methods.lowrank.views import matrix_view


@dataclass(frozen=True)
class Factored:
    left: torch.Tensor  # (m, r) float32, CPU
    right: torch.Tensor  # (r, n) float32, CPU
    stats: dict[str, Any]


def rank_objective(
    singular_values: torch.Tensor, m: int, n: int, alpha: float, mu: float, normalize: bool
) -> torch.Tensor:
    """J(r) for r = 0..len(s) as a float64 tensor (see the module docstring)."""
    s2 = singular_values.double() ** 2
    tail = torch.cat([torch.flip(torch.cumsum(torch.flip(s2, [0]), 0), [0]), s2.new_zeros(1)])
    scale = float(s2.sum()) if normalize and float(s2.sum()) > 0 else 1.0
    ranks = torch.arange(s2.numel() + 1, dtype=torch.float64)
    return alpha * ranks * (m + n) + mu / 2 * tail / scale


def select_rank(singular_values: torch.Tensor, m: int, n: int, step: LowRankStep) -> int:
    """The rank the step asks for, given the singular values (descending) of an m x n matrix."""
    full = singular_values.numel()
    if step.rank is not None:
        return min(step.rank, full)
    if step.energy is not None:
        s2 = singular_values.double() ** 2
        cumulative = torch.cumsum(s2, 0)
        reached = torch.nonzero(cumulative >= step.energy * cumulative[-1]).squeeze(1)
        return int(reached[0]) + 1 if reached.numel() else full
    assert step.alpha is not None
    objective = rank_objective(singular_values, m, n, step.alpha, step.mu, step.normalize)
    return int(torch.argmin(objective))  # argmin returns the first minimum: ties go to the smaller rank


def factorize(tensor: torch.Tensor, step: LowRankStep) -> Factored:
    """SVD of the matrix view (on the tensor's device), truncated to the selected rank."""
    matrix = matrix_view(tensor.detach()).float()
    m, n = matrix.shape
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    r = select_rank(s.cpu(), m, n, step)
    root = s[:r].sqrt()
    left = (u[:, :r] * root).contiguous().cpu()
    right = (root[:, None] * vh[:r]).contiguous().cpu()
    s2 = s.double().cpu() ** 2
    total = float(s2.sum())
    stats = {
        "rank": r,
        "max_rank": int(s.numel()),
        "energy_kept": float(s2[:r].sum()) / total if total > 0 else 1.0,
        "rank_selection": "rank"
        if step.rank is not None
        else "energy"
        if step.energy is not None
        else "alpha",
    }
    return Factored(left, right, stats)


def apply(step: LowRankStep, work: Work, ctx: StepContext) -> None:
    """Replace the whole tensor by two factors (the record stores them, no values)."""
    if work.tensor.ndim < 2:
        raise SpecError(
            f"{ctx.label}: tensor {ctx.name!r} of shape {tuple(work.tensor.shape)} "
            "has no matrix view for lowrank"
        )
    factored = factorize(work.tensor, step)
    work.record.factors = (factored.left, factored.right)
    work.record.stats.update(factored.stats)
