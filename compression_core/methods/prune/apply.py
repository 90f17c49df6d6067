"""Magnitude pruning that keeps exactly κ weights: the exact solution of min ||w - θ||² s.t. ||θ||₀ ≤ κ.

Ties at the threshold are broken deterministically by position (lowest flat index first), so the same
tensor and κ always give the same mask. Finding the threshold uses `kthvalue` (linear time), not a sort.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from compression_core.errors import SpecError
from compression_core.methods.base import StepContext, Work
from compression_core.methods.prune.spec import PruneStep, Scope
from compression_core.select import Selection


def keep_count(step: PruneStep, numel: int) -> int:
    """κ for a tensor (or group) of `numel` weights: `keep` as given, or round((1 - sparsity) * numel)."""
    if step.keep is not None:
        return step.keep
    assert step.sparsity is not None
    return max(1, min(numel, round((1.0 - step.sparsity) * numel)))


def _keep_mask(magnitudes: torch.Tensor, keep: int) -> torch.Tensor:
    """Boolean mask with exactly `keep` True entries at the largest magnitudes (ties: lowest index)."""
    n = magnitudes.numel()
    if keep >= n:
        return torch.ones(n, dtype=torch.bool, device=magnitudes.device)
    if keep <= 0:
        return torch.zeros(n, dtype=torch.bool, device=magnitudes.device)
    if magnitudes.device.type == "cpu":  # numpy's introselect is several times faster than torch.kthvalue
        return torch.from_numpy(_keep_mask_numpy(magnitudes.numpy(), keep))
    threshold = torch.kthvalue(magnitudes, n - keep + 1).values
    mask = magnitudes > threshold
    missing = keep - int(mask.sum())
    if missing > 0:
        ties = torch.nonzero(magnitudes == threshold).squeeze(1)[:missing]
        mask[ties] = True
    return mask


def _keep_mask_numpy(magnitudes: np.ndarray, keep: int) -> np.ndarray:
    n = magnitudes.size
    threshold = np.partition(magnitudes, n - keep)[n - keep]
    mask = magnitudes > threshold
    missing = keep - int(np.count_nonzero(mask))
    if missing > 0:
        mask[np.flatnonzero(magnitudes == threshold)[:missing]] = True
    return mask


def magnitudes_of(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.reshape(-1).float().abs()


def keep_positions(tensor: torch.Tensor, keep: int) -> torch.Tensor:
    """Sorted int64 flat indices of the `keep` largest-magnitude entries (on the tensor's device)."""
    mask = _keep_mask(magnitudes_of(tensor), keep)
    if mask.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(mask.numpy()))
    return torch.nonzero(mask).squeeze(1)


def global_keep_counts(tensors: Sequence[torch.Tensor], keep: int) -> list[int]:
    """Split a global κ over tensors by ranking all their magnitudes together.

    Pruning each tensor with its share then gives the same mask as one global ranking, since the ties at
    the global threshold are taken in concatenation order, i.e. by flat index within each tensor.
    """
    magnitudes = torch.cat([magnitudes_of(t) for t in tensors])
    mask = _keep_mask(magnitudes, keep)
    sizes = [t.numel() for t in tensors]
    return [int(part.sum()) for part in torch.split(mask, sizes)]


def global_groups(
    selections: Mapping[str, Selection], numel: Mapping[str, int]
) -> list[tuple[list[str], int]]:
    """The tensors of each rule that prunes with scope=global, with the κ they share (SpecError when κ is
    more than their weights). The in-memory and the streaming rankings both start here."""
    groups: dict[int, list[str]] = {}
    for name, sel in selections.items():
        step = sel.rule.step("prune")
        if isinstance(step, PruneStep) and step.scope is Scope.global_:
            groups.setdefault(sel.index, []).append(name)
    shared: list[tuple[list[str], int]] = []
    for names in groups.values():
        sel = selections[names[0]]
        step = sel.rule.step("prune")
        assert isinstance(step, PruneStep)
        total = sum(numel[n] for n in names)
        keep = keep_count(step, total)
        if keep > total:
            raise SpecError(
                f"{sel.label}: keep={keep} is larger than the {total} weights of its {len(names)} tensors"
            )
        shared.append((names, keep))
    return shared


def global_keeps(
    weights: Mapping[str, torch.Tensor], selections: Mapping[str, Selection], device: str | None = None
) -> dict[str, int]:
    """κ per tensor for the rules that prune with scope=global: one magnitude ranking over all of a rule's
    tensors decides how many each keeps. Used by direct compression, retraining and each LC C step."""
    keeps: dict[str, int] = {}
    numel = {name: weights[name].numel() for name in selections}
    for names, keep in global_groups(selections, numel):
        tensors = [weights[n] if device is None else weights[n].to(device) for n in names]
        keeps.update(zip(names, global_keep_counts(tensors, keep), strict=True))
    return keeps


def apply(step: PruneStep, work: Work, ctx: StepContext) -> None:
    """Keep the κ largest-magnitude entries: the record stores their positions, the next step their values."""
    tensor = work.tensor
    kappa = ctx.keep if ctx.keep is not None else keep_count(step, tensor.numel())
    if kappa > tensor.numel():
        raise SpecError(
            f"{ctx.label}: keep={kappa} is larger than tensor {ctx.name!r} "
            f"({tensor.numel()} weights, shape {tuple(tensor.shape)})"
        )
    positions = keep_positions(tensor, kappa)
    work.values = work.values[positions]
    work.record.positions = positions.cpu()
    work.record.stats.update(kept=int(positions.numel()), keep_requested=kappa)
