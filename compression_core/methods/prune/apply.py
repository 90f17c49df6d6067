"""Magnitude pruning that keeps exactly κ weights: the exact solution of min ||w - θ||² s.t. ||θ||₀ ≤ κ.

Ties at the threshold are broken deterministically by position (lowest flat index first), so the same
tensor and κ always give the same mask. Finding the threshold uses `kthvalue` (linear time), not a sort.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch

from compression_core.errors import SpecError
from compression_core.methods.base import StepContext, Work
from compression_core.methods.prune.pattern import pattern_positions
from compression_core.methods.prune.spec import PruneStep, Scope
from compression_core.records import position_dtype
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


_RADIX_FROM = 1 << 22  # CPU tensors this large are ranked in chunks (radix selection), not by one partition
_CHUNK = 1 << 20  # entries whose magnitudes exist at once in the radix passes
_BUCKETS = 1 << 16
_NP_INDEX = {torch.int32: np.int32, torch.int64: np.int64}


def keep_positions(tensor: torch.Tensor, keep: int, dtype: torch.dtype = torch.int64) -> torch.Tensor:
    """Sorted flat indices (as `dtype`) of the `keep` largest-magnitude entries (on the tensor's device).

    A large CPU tensor is ranked without a float32 copy of itself: radix selection on the magnitudes'
    bit patterns, a chunk at a time (`_keep_positions_chunked`), which gives the same positions."""
    if tensor.device.type == "cpu" and tensor.numel() >= _RADIX_FROM:
        return torch.from_numpy(_keep_positions_chunked(tensor.reshape(-1), keep, _NP_INDEX[dtype]))
    mask = _keep_mask(magnitudes_of(tensor), keep)
    if mask.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(mask.numpy())).to(dtype)
    return torch.nonzero(mask).squeeze(1).to(dtype)


def kth_from_top(counts: np.ndarray, keep: int) -> tuple[int, int]:
    """(bucket, entries above it) for the bucket of a histogram holding the `keep`-th largest entry."""
    above = np.cumsum(counts[::-1])[::-1]  # above[b] = entries in buckets >= b
    bucket = int(np.flatnonzero(above >= keep)[-1])
    return bucket, int(above[bucket] - counts[bucket])


def _magnitude_bits(flat: torch.Tensor) -> Iterator[tuple[int, np.ndarray]]:
    """(offset, uint32 bit patterns of the float32 magnitudes) chunk by chunk: non-negative float32
    values order like their bit patterns."""
    for lo in range(0, flat.numel(), _CHUNK):
        yield lo, magnitudes_of(flat[lo : lo + _CHUNK]).numpy().view(np.uint32)


def _keep_positions_chunked(flat: torch.Tensor, keep: int, dtype: type) -> np.ndarray:
    """`_keep_mask`'s positions in memory of the output plus one chunk: the κ-th largest magnitude's bits
    from a histogram of their high 16 bits, then of the low 16 bits inside that bucket; then every entry
    above it and the first `keep - above` entries equal to it (ties: lowest index), as `_keep_mask`."""
    n = flat.numel()
    if keep >= n:
        return np.arange(n, dtype=dtype)
    if keep <= 0:
        return np.zeros(0, dtype=dtype)
    high = np.zeros(_BUCKETS, dtype=np.int64)
    for _, bits in _magnitude_bits(flat):
        high += np.bincount(bits >> 16, minlength=_BUCKETS)
    bucket, above = kth_from_top(high, keep)
    low = np.zeros(_BUCKETS, dtype=np.int64)
    for _, bits in _magnitude_bits(flat):
        low += np.bincount(bits[(bits >> 16) == bucket] & 0xFFFF, minlength=_BUCKETS)
    low_threshold, _ = kth_from_top(low, keep - above)
    threshold = np.uint32((bucket << 16) | low_threshold)
    ties = keep - above - int(low[low_threshold + 1 :].sum())
    out: np.ndarray = np.empty(keep, dtype=dtype)
    at = 0
    for lo, bits in _magnitude_bits(flat):
        chosen = bits > threshold
        if ties:
            equal = np.flatnonzero(bits == threshold)[:ties]
            chosen[equal] = True
            ties -= equal.size
        found = np.flatnonzero(chosen)
        out[at : at + found.size] = found + lo
        at += found.size
    assert at == keep
    return out


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
    if step.nm is not None:
        _apply_pattern(step.nm, work)
        return
    kappa = ctx.keep if ctx.keep is not None else keep_count(step, tensor.numel())
    if kappa > tensor.numel():
        raise SpecError(
            f"{ctx.label}: keep={kappa} is larger than tensor {ctx.name!r} "
            f"({tensor.numel()} weights, shape {tuple(tensor.shape)})"
        )
    positions = keep_positions(tensor, kappa, position_dtype(tensor.numel()))
    work.values = torch.index_select(work.values, 0, positions)  # `values[positions]` widens int32 to int64
    work.record.positions = positions.cpu()
    work.record.stats.update(kept=int(positions.numel()), keep_requested=kappa)


def _apply_pattern(nm: tuple[int, int], work: Work) -> None:
    """N:M: the N largest magnitudes of every M consecutive weights along the input dimension (pattern.py)."""
    tensor = work.tensor
    positions = pattern_positions(tensor, *nm, dtype=position_dtype(tensor.numel()))
    work.values = torch.index_select(work.values, 0, positions)
    work.record.positions = positions.cpu()
    kept = int(positions.numel())
    work.record.stats.update(
        kept=kept, pattern=f"{nm[0]}:{nm[1]}", sparsity=1.0 - kept / max(1, tensor.numel())
    )
