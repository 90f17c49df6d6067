"""How many channels a structured sparsity removes, and how many parameters a model has: one rule and one
implementation for both forms of structured pruning (the data-free spec step that zeroes channels,
`methods/structured`, and the physical pruning with Torch-Pruning, `deploy/pruning`).

The rule: `sparsity` of `C` channels removes the nearest whole number of channels, halves rounded up
(floor(sparsity · C + 1/2): 0.3 of 5 channels removes 2, 0.5 of 5 removes 3), and at least one channel is
always kept. Python's `round` (halves to even: 0.5 of 5 would remove 2, 0.5 of 7 would remove 4) and
Torch-Pruning's own `C - int(C · (1 - sparsity))` (which depends on the float error of `1 - sparsity`) are
not used: `torch_pruning_ratio` gives Torch-Pruning the ratio that makes it remove exactly this count.
"""

from __future__ import annotations

import math

from torch import nn

__all__ = ["channels_removed", "count_parameters", "torch_pruning_ratio"]

_TOLERANCE = 1e-9  # 0.7 * 5 is 3.4999999999999996 in floating point: treat it as the 3.5 it means


def channels_removed(channels: int, sparsity: float) -> int:
    """Channels that `sparsity` of `channels` removes: floor(sparsity · C + 1/2), at most C - 1."""
    if channels < 1:
        return 0
    count = math.floor(sparsity * channels + 0.5 + _TOLERANCE)
    return max(0, min(count, channels - 1))


def torch_pruning_ratio(channels: int, removed: int) -> float:
    """The pruning ratio for which Torch-Pruning (`n = C - int(C · (1 - ratio))`) removes exactly `removed`
    of `channels`: half a channel short of removed / C, so float error in `1 - ratio` cannot move `int`."""
    if removed <= 0:
        return 0.0
    return (removed - 0.5) / channels


def count_parameters(model: nn.Module) -> int:
    """Entries of every parameter of `model` (buffers such as batch-norm statistics are not counted)."""
    return sum(math.prod(p.shape) for p in model.parameters())
