"""Global pruning's κ split over tensors without holding them: exact selection in two histogram passes.

The in-memory `methods.prune.apply.global_keep_counts` ranks the float32 magnitudes of all of a rule's tensors
together and keeps the κ largest, ties at the threshold taken in concatenation order. Non-negative
float32 values order like their bit patterns read as uint32, so the κ-th largest magnitude can be found
exactly by radix selection: pass 1 histograms the high 16 bits of every magnitude (65,536 counters) and
finds the bucket holding the κ-th largest; pass 2 histograms the low 16 bits of the entries in that bucket,
per tensor, which gives the exact threshold `t`, each tensor's count above it and its count equal to it.
A tensor's share is then its count above `t` plus the ties left over after the tensors before it: the same
numbers as the in-memory ranking, with memory of one tensor plus one histogram per tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from compression_core.errors import InputError
from compression_core.methods.prune.apply import global_groups, kth_from_top, magnitudes_of

_BUCKETS = 1 << 16
_CHUNK = 1 << 20  # entries histogrammed at once: bincount widens its input to int64 (8 bytes per entry)

Loader = Callable[[str], torch.Tensor]
MapFn = Callable[[Callable[[str], Any], Iterable[str]], Iterator[Any]]


def _bits(tensor: torch.Tensor, name: str) -> np.ndarray:
    """Bit patterns of the float32 magnitudes, as uint32 (their order is the magnitudes' order)."""
    magnitudes = magnitudes_of(tensor).numpy()
    if not np.isfinite(magnitudes).all():
        raise InputError(f"tensor {name!r} contains NaN or infinity; it cannot be compressed")
    return magnitudes.view(np.uint32)


def _bf16_abs_bits(tensor: torch.Tensor, name: str) -> np.ndarray:
    """bfloat16 is the high half of float32: its magnitude's bits are the float32 magnitude's high 16 bits
    (the low 16 are zero), read without converting the tensor."""
    bits = tensor.reshape(-1).view(torch.int16).numpy().view(np.uint16) & np.uint16(0x7FFF)
    if bool((bits >= 0x7F80).any()):  # exponent all ones: infinity or NaN
        raise InputError(f"tensor {name!r} contains NaN or infinity; it cannot be compressed")
    return bits


def _chunks(tensor: torch.Tensor) -> Iterator[torch.Tensor]:
    flat = tensor.reshape(-1)
    for start in range(0, flat.numel(), _CHUNK):
        yield flat[start : start + _CHUNK]


@dataclass(frozen=True)
class _Fine:
    above: int  # entries whose high 16 bits are above the bucket
    low: dict[int, int]  # low 16 bits -> count, for the entries inside the bucket


def split_global_keep(names: list[str], keep: int, load: Loader, map_fn: MapFn) -> dict[str, int]:
    """κ per tensor for one global-pruning group, equal to `global_keep_counts` on the tensors in order."""

    def coarse(name: str) -> np.ndarray:
        tensor, counts = load(name), np.zeros(_BUCKETS, dtype=np.int64)
        for chunk in _chunks(tensor):
            if tensor.dtype == torch.bfloat16:
                counts += np.bincount(_bf16_abs_bits(chunk, name), minlength=_BUCKETS)
            else:
                counts += np.bincount(_bits(chunk, name) >> 16, minlength=_BUCKETS)
        return counts

    counts = np.zeros(_BUCKETS, dtype=np.int64)
    for histogram in map_fn(coarse, names):
        counts += histogram
    bucket, _ = kth_from_top(counts, keep)

    def fine(name: str) -> _Fine:
        tensor, above = load(name), 0
        low = np.zeros(_BUCKETS, dtype=np.int64)
        for chunk in _chunks(tensor):
            if tensor.dtype == torch.bfloat16:  # the low 16 bits are zero
                high = _bf16_abs_bits(chunk, name)
                low[0] += int(np.count_nonzero(high == bucket))
            else:
                bits = _bits(chunk, name)
                high = bits >> 16
                low += np.bincount(bits[high == bucket] & 0xFFFF, minlength=_BUCKETS)
            above += int(np.count_nonzero(high > bucket))
        nonzero = np.flatnonzero(low)
        return _Fine(above, dict(zip(nonzero.tolist(), low[nonzero].tolist(), strict=True)))

    parts: list[_Fine] = list(map_fn(fine, names))
    low_counts = np.zeros(_BUCKETS, dtype=np.int64)
    for part in parts:
        for value, count in part.low.items():
            low_counts[value] += count
    above_bucket = sum(part.above for part in parts)
    low_threshold, _ = kth_from_top(low_counts, keep - above_bucket)
    greater = [part.above + sum(c for v, c in part.low.items() if v > low_threshold) for part in parts]
    missing = keep - sum(greater)
    shares = {}
    for name, part, above in zip(names, parts, greater, strict=True):
        ties = min(part.low.get(low_threshold, 0), missing)
        missing -= ties
        shares[name] = above + ties
    assert missing == 0 and sum(shares.values()) == keep
    return shares


def streaming_global_keeps(
    infos: Mapping[str, int], selections: Mapping[str, Any], load: Loader, map_fn: MapFn
) -> dict[str, int]:
    """Like `methods.prune.apply.global_keeps`, from tensor sizes (`infos`: name -> numel, in reading
    order), a loader and an ordered map (the caller's pool), for every rule that prunes with scope=global.
    Registered as the prune step's `shared_streaming`; `selections` are `select.Selection`s."""
    keeps: dict[str, int] = {}
    for names, keep in global_groups(selections, infos):
        keeps.update(split_global_keep(names, keep, load, map_fn))
    return keeps
