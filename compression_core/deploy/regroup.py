"""Reshapes that split the channels of an NCHW tensor into groups or merge them back (a channel shuffle:
`(N, C, H, W) -> (N, g, C/g, H, W) -> transpose -> (N, C, H, W)`, as ShuffleNetV2 does), made visible to
Torch-Pruning as layers it must not prune through.

Torch-Pruning 1.6 cannot follow such a reshape: its index mapping divides by the channels it infers after
the reshape, which are 0 there, and tracing fails with "integer division or modulo by zero" (on torchvision's
own ShuffleNetV2 as on the module converted from its ONNX graph). Removing channels on one side of a shuffle
would also interleave the kept channels differently from the original model. So a parameterless layer that
(un)groups channels is wrapped in `ChannelRegroup`, which Torch-Pruning sees as a customized layer with a
pruner that refuses; `plan_structured` then refuses, with that reason, the layers whose output channels reach
it, and prunes the others (inside the ShuffleNet branches) exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

__all__ = ["ChannelRegroup", "RegroupPruner", "customized_pruners", "wrap_regroups"]


class ChannelRegroup(nn.Module):
    """A layer that moves channels between the channel axis and a group axis; computes what `inner` does."""

    def __init__(self, inner: nn.Module, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.inner = inner
        self.in_channels = in_channels
        self.out_channels = out_channels

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner(*args, **kwargs)


class RegroupPruner(tp.pruner.BasePruningFunc):
    """Torch-Pruning's view of a `ChannelRegroup`: its channel counts; pruning through it is refused."""

    def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        raise RuntimeError("Torch-Pruning cannot remove channels through a channel regrouping reshape")

    def prune_in_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        # a method of its own: Torch-Pruning couples a layer's input and output channels (as a BatchNorm's)
        # when both are one function
        raise RuntimeError("Torch-Pruning cannot remove channels through a channel regrouping reshape")

    def get_out_channels(self, layer: nn.Module) -> int:
        assert isinstance(layer, ChannelRegroup)
        return layer.out_channels

    def get_in_channels(self, layer: nn.Module) -> int:
        assert isinstance(layer, ChannelRegroup)
        return layer.in_channels


def _regroups(before: torch.Size, after: torch.Size) -> bool:
    """NCHW channels split into (groups, channels per group), or such a split merged back."""
    if len(before) == 4 and len(after) == 5:
        split, rest = after, before
    elif len(before) == 5 and len(after) == 4:
        split, rest = before, after
    else:
        return False
    return split[0] == rest[0] and split[1] * split[2] == rest[1] and tuple(split[3:]) == tuple(rest[2:])


def wrap_regroups(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Wrap (in place) every parameterless leaf layer of `model` that (un)groups channels on `example` in
    `ChannelRegroup`; returns their names. Idempotent; the model computes what it computed."""
    found: dict[str, tuple[int, int]] = {}
    handles = []

    def hook(name: str) -> Any:
        def record(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            first = inputs[0] if inputs else None
            if not isinstance(first, torch.Tensor) or not isinstance(output, torch.Tensor):
                return
            if first.numel() == output.numel() and _regroups(first.shape, output.shape):
                found[name] = (int(first.shape[1]), int(output.shape[1]))

        return record

    wrapped = [f"{n}." for n, m in model.named_modules() if isinstance(m, ChannelRegroup)]
    for name, module in model.named_modules():
        if (
            name
            and not isinstance(module, ChannelRegroup)
            and not name.startswith(tuple(wrapped))
            and not any(True for _ in module.children())
            and not any(True for _ in module.parameters())
            and not any(True for _ in module.buffers())
        ):
            handles.append(module.register_forward_hook(hook(name)))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example)
    finally:
        model.train(was)
        for handle in handles:
            handle.remove()
    for name, (channels_in, channels_out) in found.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, ChannelRegroup(getattr(parent, child), channels_in, channels_out))
    return sorted(found)


def customized_pruners() -> dict[Any, tp.pruner.BasePruningFunc]:
    """The `customized_pruners` argument of Torch-Pruning's DependencyGraph and pruners."""
    return {ChannelRegroup: RegroupPruner()}
