"""Structured (channel) pruning: whole output channels of convolutions / rows of linear layers.

Importance of a channel is the L1 or L2 norm of its slice (Li et al. 2017; Torch-Pruning's group norm).
Two forms, because the `.bin` and `model.pth` must load into the uploaded architecture:

- the data-free spec step `{"type": "structured", "sparsity": 0.5, "norm": "l1", "dim": 0}` zeroes the
  weakest slices of a tensor (how many: `compression_core.channels.channels_removed`, the one rule the
  physical pruning follows too) and keeps its shape; the record stores the positions of the kept slices'
  entries (long runs, which the format's position coding stores in few bits) and their values
  (or a codebook with `quantize`). Biases and batch-norm parameters of the zeroed channels are untouched by
  the data-free step (a rule sees one tensor), so the channel then outputs a constant.
- `shrink_model` builds the physically smaller network for a chain of layers: a removed output channel also
  removes the bias entry, the following batch norm's entries and the next conv/linear layer's input
  channel (for a linear layer after a flatten, the channel's block of features). `zero_channels` gives the
  same-shape model it equals exactly (weights, biases and batch-norm affine parameters of removed channels
  zeroed), which is the strict-loading form a dense `model.pth` holds.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from compression_core.channels import channels_removed, count_parameters
from compression_core.errors import SpecError
from compression_core.methods.base import StepContext, Work
from compression_core.methods.structured.spec import ChannelNorm, StructuredStep

__all__ = [
    "Link",
    "apply",
    "channel_norms",
    "chain_links",
    "removed_channels",
    "shrink_model",
    "shrunk_architecture",
    "structured_positions",
    "zero_channels",
]

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def channel_norms(
    tensor: torch.Tensor, dim: int = 0, norm: ChannelNorm | str = ChannelNorm.l1
) -> torch.Tensor:
    """The L1 or L2 norm of each slice of `tensor` along `dim` (float64, one per channel)."""
    moved = tensor.detach().double().movedim(dim, 0).reshape(tensor.shape[dim], -1)
    return moved.abs().sum(1) if ChannelNorm(norm) is ChannelNorm.l1 else moved.norm(dim=1)


def removed_channels(
    tensor: torch.Tensor, sparsity: float, *, dim: int = 0, norm: ChannelNorm | str = ChannelNorm.l1
) -> torch.Tensor:
    """Sorted indices of the `channels_removed(C, sparsity)` weakest channels (the nearest whole number,
    halves up; ties: lowest index first; at least one channel is always kept)."""
    count = channels_removed(int(tensor.shape[dim]), sparsity)
    order = torch.argsort(channel_norms(tensor, dim, norm), stable=True)
    return torch.sort(order[:count]).values


def structured_positions(
    tensor: torch.Tensor, step: StructuredStep, *, label: str = "structured"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sorted flat positions of the kept channels' entries, indices of the removed channels)."""
    if step.dim >= tensor.ndim:
        raise SpecError(f"{label}: dim {step.dim} does not exist in a tensor of shape {tuple(tensor.shape)}")
    removed = removed_channels(tensor, step.sparsity, dim=step.dim, norm=step.norm)
    keep = torch.ones(tensor.shape[step.dim], dtype=torch.bool)
    keep[removed] = False
    shape = [1] * tensor.ndim
    shape[step.dim] = -1
    mask = keep.to(tensor.device).reshape(shape).expand(tensor.shape)
    return torch.nonzero(mask.reshape(-1)).squeeze(1), removed


def apply(step: StructuredStep, work: Work, ctx: StepContext) -> None:
    """Zero the weakest channels: the record stores the kept channels' positions, the next step their
    values."""
    positions, removed = structured_positions(work.tensor, step, label=f"{ctx.label}: {ctx.name!r}")
    work.values = work.values[positions]
    work.record.positions = positions.cpu()
    work.record.stats.update(kept=int(positions.numel()), channels_removed=removed.tolist())


# --- the physically smaller model ------------------------------------------------------------------------


@dataclass
class Link:
    """A conv/linear layer whose output channels can go, the batch norms on them and the layer consuming
    them (`block` consumer inputs per channel: 1, or H·W when a flatten sits between)."""

    producer: str
    norms: list[str]
    consumer: str | None
    block: int


def chain_links(model: nn.Module, example: torch.Tensor) -> dict[str, Link]:
    """Follow the execution order of the leaf modules on `example`: the next conv/linear layer after a
    producer consumes its channels, batch norms between them normalize them. Valid for chains (MLPs,
    LeNets, VGG-style nets); `shrink_model` checks the result and refuses other graphs."""
    order: list[tuple[str, nn.Module, tuple[int, ...]]] = []
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, _LAYERS + _NORMS):
            handles.append(
                module.register_forward_hook(
                    lambda m, i, o, name=name: order.append((name, m, tuple(i[0].shape)))
                )
            )
    try:
        with torch.no_grad():
            was = model.training
            model.eval()
            model(example)
            model.train(was)
    finally:
        for handle in handles:
            handle.remove()
    links: dict[str, Link] = {}
    for i, (name, module, _) in enumerate(order):
        if not isinstance(module, _LAYERS) or name in links:
            continue
        channels = module.weight.shape[0]
        link = Link(name, [], None, 1)
        for later, other, _shape in order[i + 1 :]:
            if isinstance(other, _NORMS) and other.num_features == channels:
                link.norms.append(later)
                continue
            if isinstance(other, _LAYERS):
                inputs = other.weight.shape[1] * (getattr(other, "groups", 1) or 1)
                if inputs % channels == 0 and getattr(other, "groups", 1) == 1:
                    link.consumer, link.block = later, inputs // channels
            break
        links[name] = link
    return links


def _kept(total: int, removed: torch.Tensor, block: int = 1) -> torch.Tensor:
    keep = torch.ones(total, dtype=torch.bool)
    keep[removed] = False
    return torch.nonzero(keep.repeat_interleave(block)).squeeze(1)


def _plan(model: nn.Module, ratios: Mapping[str, float], norm: ChannelNorm | str) -> dict[str, torch.Tensor]:
    modules = dict(model.named_modules())
    plan = {}
    for key, ratio in ratios.items():
        name = key.removesuffix(".weight")
        module = modules.get(name)
        if not isinstance(module, _LAYERS):
            raise SpecError(f"shrink: {key!r} is not a conv or linear layer of the model")
        plan[name] = removed_channels(module.weight, ratio, norm=norm)
    return plan


def zero_channels(
    model: nn.Module, removed: Mapping[str, torch.Tensor], links: Mapping[str, Link]
) -> nn.Module:
    """Zero, in place, the weights, biases and batch-norm affine parameters of the removed channels."""
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, idx in removed.items():
            layer = modules[name]
            layer.weight[idx] = 0
            if layer.bias is not None:
                layer.bias[idx] = 0
            for bn_name in links[name].norms:
                bn = modules[bn_name]
                if bn.weight is not None:
                    bn.weight[idx] = 0
                    bn.bias[idx] = 0
    return model


def _slice_(module: nn.Module, attr: str, dim: int, keep: torch.Tensor) -> None:
    tensor = getattr(module, attr)
    if tensor is None:
        return
    new = tensor.detach().index_select(dim, keep.to(tensor.device)).clone()
    if isinstance(tensor, nn.Parameter):
        setattr(module, attr, nn.Parameter(new, requires_grad=tensor.requires_grad))
    else:
        setattr(module, attr, new)


def shrink_model(
    model: nn.Module,
    ratios: Mapping[str, float] | None = None,
    *,
    example: torch.Tensor,
    removed: Mapping[str, torch.Tensor] | None = None,
    norm: ChannelNorm | str = ChannelNorm.l1,
    check: bool = True,
) -> nn.Module:
    """A smaller copy of `model` without the pruned output channels of the named conv/linear layers.

    `ratios` (layer name -> fraction of output channels, weakest by `norm`) or `removed` (layer name ->
    channel indices) say what goes. With `check`, the copy's outputs on `example` must equal those of
    `zero_channels` applied to a copy (SpecError otherwise: the graph is not a plain chain).
    """
    links = chain_links(model, example)
    plan = dict(removed) if removed is not None else _plan(model, ratios or {}, norm)
    for name in plan:
        if name not in links or links[name].consumer is None:
            raise SpecError(f"shrink: layer {name!r} has no following layer to take its channels away from")
    small = copy.deepcopy(model)
    modules = dict(small.named_modules())
    for name, idx in plan.items():
        layer, link = modules[name], links[name]
        total = layer.weight.shape[0]
        keep = _kept(total, idx)
        _slice_(layer, "weight", 0, keep)
        _slice_(layer, "bias", 0, keep)
        _set_size(layer, "out", len(keep))
        for bn_name in link.norms:
            bn = modules[bn_name]
            for attr in ("weight", "bias", "running_mean", "running_var"):
                _slice_(bn, attr, 0, keep)
            bn.num_features = len(keep)
        assert link.consumer is not None
        consumer = modules[link.consumer]
        inputs = _kept(total, idx, link.block)
        _slice_(consumer, "weight", 1, inputs)
        _set_size(consumer, "in", len(inputs))
    if check:
        reference = zero_channels(copy.deepcopy(model), plan, links)
        reference.eval()
        small.eval()
        try:
            with torch.no_grad():
                expected, got = reference(example), small(example)
            same = expected.shape == got.shape and torch.allclose(expected, got, rtol=1e-4, atol=1e-5)
        except RuntimeError:  # shapes no longer fit: a branch used the removed channels too
            same = False
        if not same:
            raise SpecError(
                "shrink: the model is not a plain chain of layers (residual or concatenated "
                "branches?); the smaller model would compute something else"
            )
    return small


def _set_size(layer: nn.Module, side: str, size: int) -> None:
    if isinstance(layer, nn.Linear):
        setattr(layer, "out_features" if side == "out" else "in_features", size)
    else:
        setattr(layer, "out_channels" if side == "out" else "in_channels", size)


def shrunk_architecture(
    arch: str, kwargs: Mapping[str, object], small: nn.Module
) -> dict[str, object] | None:
    """Constructor kwargs that build `small` for the built-ins whose widths are arguments (mlp, lenet300);
    None for others (their shrunk state dict needs the caller's own constructor)."""
    if arch == "mlp":
        layers = [getattr(small, f"fc{i}") for i in range(1, int(getattr(small, "depth", 0)) + 1)]
        sizes = [layers[0].in_features] + [layer.out_features for layer in layers]
        return {**kwargs, "sizes": sizes}
    if arch == "lenet300":
        return {**kwargs, "hidden": [small.fc1.out_features, small.fc2.out_features]}  # type: ignore[union-attr]
    return None


def zero_output_channels(state_dict: Mapping[str, torch.Tensor], names: list[str]) -> dict[str, torch.Tensor]:
    """Layer name -> indices of output channels whose weights are all zero, for the named weight tensors."""
    out = {}
    for name in names:
        weight = state_dict[name]
        zero = (weight.reshape(weight.shape[0], -1) == 0).all(dim=1)
        if bool(zero.any()):
            out[name.removesuffix(".weight")] = torch.nonzero(zero).squeeze(1)
    return out


def structured_report(
    model: nn.Module, names: list[str], example: torch.Tensor, arch: str, kwargs: Mapping[str, object]
) -> dict[str, object]:
    """What the physically smaller model would be, for metrics.json: per-layer channels kept of total,
    parameter counts, and the constructor kwargs that build it (built-ins whose widths are arguments).

    `model` holds the zero-channel weights (the decoded `.bin`); only output channels (dim 0) that are
    zero in a layer with a following layer are removed. The smaller model drops those channels' biases and
    batch-norm entries too, so it computes what the decoded model computes only where they were zero
    (`equals_decoded` says whether it does on `example`)."""
    removed = zero_output_channels(model.state_dict(), names)
    links = chain_links(model, example)
    removed = {n: idx for n, idx in removed.items() if n in links and links[n].consumer is not None}
    report: dict[str, object] = {
        "channels": {
            n: {
                "kept": int(dict(model.named_modules())[n].weight.shape[0] - len(idx)),
                "total": int(dict(model.named_modules())[n].weight.shape[0]),
            }
            for n, idx in removed.items()
        },
        "params_before": count_parameters(model),
    }
    try:
        small = shrink_model(model, removed=removed, example=example)
    except SpecError as error:
        report["error"] = str(error)
        return report
    report["params_after"] = count_parameters(small)
    with torch.no_grad():  # false when a removed channel's bias / batch-norm shift was not zero
        was = model.training
        model.eval()
        report["equals_decoded"] = bool(torch.allclose(model(example), small(example), rtol=1e-4, atol=1e-5))
        model.train(was)
    report["shapes"] = {k: list(v.shape) for k, v in small.state_dict().items()}
    report["kwargs"] = shrunk_architecture(arch, kwargs, small)
    return report
