"""Physical structured pruning with Torch-Pruning's dependency graph: plan, refuse, apply, replay.

Torch-Pruning (Fang et al., CVPR 2023) traces the model once and groups every layer whose channels are
coupled: removing output channel i of a convolution also removes entry i of the batch norm after it, input
channel i of every consumer, and, through a residual addition or a concatenation, channel i of every other
producer of the same tensor. We only decide *what* to remove; the library does the surgery.

- `plan_structured` traces the groups of the layers a spec selects and answers, without changing the model,
  which layers lose how many channels and which cannot be pruned, with the reason: a layer whose channels are
  the model's outputs, or one coupled (e.g. by a residual addition) to a layer the spec tells us to leave
  alone: pruning one side of an addition and not the other would break the addition's dimension.
- `prune_structured` applies the plan with `MetaPruner` (importance l1 / l2 / taylor, per-layer or one
  ranking per rule, `round_to`), checks that the smaller model still runs and keeps its output shape, and
  returns Torch-Pruning's pruning history: (root layer, out/in channels, indices) triples, which
  `replay_history` re-applies to a freshly built architecture (how `load_model` rebuilds it).
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from compression_core.channels import channels_removed, torch_pruning_ratio
from compression_core.deploy.regroup import ChannelRegroup, customized_pruners, wrap_regroups
from compression_core.deploy.spec import Importance, PruneScope
from compression_core.errors import SpecError

__all__ = [
    "LayerPlan",
    "PruneTarget",
    "StructuredPlan",
    "check_runs",
    "plan_structured",
    "prune_structured",
    "replay_history",
]

log = logging.getLogger(__name__)

PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
History = list[tuple[str, bool, list[int]]]


@dataclass(frozen=True)
class PruneTarget:
    """One layer a structured rule selects: the fraction of its output channels to remove."""

    layer: str
    sparsity: float
    rule: int  # index of the rule (layers of one global rule share a ranking)
    scope: PruneScope = PruneScope.layer
    importance: Importance = Importance.l1
    round_to: int | None = None


@dataclass
class LayerPlan:
    layer: str
    sparsity: float
    channels: int
    kept: int | None = None  # after pruning (None before `prune_structured` ran, for global scopes)
    coupled: list[str] = field(default_factory=list)  # other layers whose output channels go with it
    reason: str | None = None  # why it cannot be pruned

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"layer": self.layer, "sparsity": self.sparsity, "channels": self.channels}
        if self.kept is not None:
            out["kept"] = self.kept
        if self.coupled:
            out["coupled"] = self.coupled
        if self.reason is not None:
            out["reason"] = self.reason
        return out


@dataclass
class StructuredPlan:
    pruned: list[LayerPlan]
    refused: list[LayerPlan]

    def raise_if_refused(self) -> None:
        if self.refused:
            raise SpecError(
                "structured: cannot prune "
                + "; ".join(f"layer {p.layer!r}: {p.reason}" for p in self.refused)
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "pruned": [p.to_dict() for p in self.pruned],
            "refused": [p.to_dict() for p in self.refused],
        }


def matches_any(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _graph(model: nn.Module, example: torch.Tensor) -> tp.DependencyGraph:
    was = model.training
    model.eval()
    try:
        wrap_regroups(model, example)  # a channel shuffle: a layer Torch-Pruning must not prune through
        return tp.DependencyGraph().build_dependency(
            model, example_inputs=example, verbose=False, customized_pruners=customized_pruners()
        )
    except Exception as exc:  # any tracing failure of a user architecture: say which model step failed
        raise SpecError(f"structured: Torch-Pruning could not trace the model: {exc}") from exc
    finally:
        model.train(was)


def _coupling(graph: tp.DependencyGraph, module: nn.Module) -> tuple[list[str], bool, list[str]]:
    """(names of the modules whose output channels are coupled with `module`'s, whether those channels are
    the model's output, the channel-regrouping layers (`ChannelRegroup`) they reach)."""
    pruner = graph.get_pruner_of_module(module)
    group = graph.get_pruning_group(module, pruner.prune_out_channels, [0])
    names: list[str] = []
    output = False
    regroups: list[str] = []
    for dep, _ in group:
        target = dep.target.module
        if isinstance(target, ChannelRegroup):
            name = graph._module2name.get(target, "")
            if name not in regroups:
                regroups.append(name)
            continue
        if isinstance(target, tp.ops._OutputOp):
            output = True
            continue
        if not dep.target.outputs and not graph.is_in_channel_pruning_fn(dep.handler):
            output = True  # nothing consumes this node's channels: they are what the model returns
        if graph.is_out_channel_pruning_fn(dep.handler) and isinstance(target, nn.Module):
            name = graph._module2name.get(target)
            if name is not None and name not in names:
                names.append(name)
    return names, output, regroups


def plan_structured(
    model: nn.Module,
    example: torch.Tensor,
    targets: Sequence[PruneTarget],
    ignore: Sequence[str] = (),
    graph: tp.DependencyGraph | None = None,
) -> StructuredPlan:
    """Which selected layers can lose channels and which cannot (and why), without changing `model`."""
    modules = dict(model.named_modules())
    graph = graph or _graph(model, example)
    pruned, refused = [], []
    for target in targets:
        if matches_any(target.layer, ignore):  # `ignore` wins over a rule's selector
            continue
        module = modules.get(target.layer)
        if not isinstance(module, PRUNABLE):
            kind = type(module).__name__ if module is not None else "no such layer"
            refused.append(
                LayerPlan(target.layer, target.sparsity, 0, reason=f"not a conv or linear layer ({kind})")
            )
            continue
        channels = int(module.weight.shape[0])
        members, output, regroups = _coupling(graph, module)
        coupled = [m for m in members if m != target.layer]
        plan = LayerPlan(target.layer, target.sparsity, channels, coupled=coupled)
        ignored = [m for m in members if matches_any(m, ignore)]
        if output:
            plan.reason = (
                "its output channels are the model's outputs (the class scores); leave it out of the rule"
            )
        elif regroups:
            plan.reason = (
                f"its output channels go through a reshape that regroups channels ({', '.join(regroups)}: a "
                "channel shuffle), which Torch-Pruning cannot prune through; leave it out of the rule"
            )
        elif ignored:
            via = "a residual addition or concatenation" if coupled else "the spec"
            plan.reason = (
                f"its output channels are tied through {via} to {', '.join(ignored)}, which `ignore` keeps; "
                f"removing them on one side only would break that dimension (ignore {target.layer} as well, "
                f"or stop ignoring {', '.join(ignored)})"
            )
        elif channels < 2:
            plan.reason = "it has a single output channel"
        if plan.reason is not None:
            refused.append(plan)
            continue
        if target.scope is PruneScope.layer:
            plan.kept = _kept(channels, target.sparsity, target.round_to)
        pruned.append(plan)
    return StructuredPlan(pruned, refused)


def _kept(channels: int, sparsity: float, round_to: int | None) -> int:
    """Channels a layer keeps after removing `sparsity` of them (the one rule, `channels_removed`; then
    Torch-Pruning's `round_to`, which rounds the kept count down to a multiple)."""
    removed = channels_removed(channels, sparsity)
    if round_to:
        kept = channels - removed
        removed = max(channels - (kept - kept % round_to), 0)
    return max(channels - removed, 1)


def _importance(kind: Importance) -> tp.importance.Importance:
    if kind is Importance.taylor:
        return tp.importance.GroupTaylorImportance()
    return tp.importance.GroupMagnitudeImportance(p=1 if kind is Importance.l1 else 2)


def prune_structured(
    model: nn.Module,
    example: torch.Tensor,
    targets: Sequence[PruneTarget],
    *,
    ignore: Sequence[str] = (),
    gradient_batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> tuple[History, StructuredPlan]:
    """Remove the planned channels from `model` in place; returns (Torch-Pruning history, plan with counts).

    Raises SpecError naming the layer when a selected layer cannot be pruned, and when the smaller model no
    longer runs or changes its output shape (`check_runs`).
    """
    if not targets:
        return [], StructuredPlan([], [])
    graph = _graph(model, example)
    plan = plan_structured(model, example, targets, ignore, graph)
    plan.raise_if_refused()
    targets = [t for t in targets if not matches_any(t.layer, ignore)]
    if not targets:
        return [], plan
    kinds = {t.importance for t in targets}
    rounds = {t.round_to for t in targets}
    if len(kinds) > 1 or len(rounds) > 1:
        raise SpecError(
            "structured: all structured rules of one model must use the same importance and round_to "
            f"(got {sorted(k.value for k in kinds)} and {sorted(rounds, key=str)})"
        )
    importance = kinds.pop()
    modules = dict(model.named_modules())
    ratios: dict[Any, float] = {}
    global_rules: dict[int, list[nn.Module]] = {}
    for target in targets:
        if target.scope is PruneScope.global_:
            global_rules.setdefault(target.rule, []).append(modules[target.layer])
        else:
            channels = int(modules[target.layer].weight.shape[0])
            ratios[modules[target.layer]] = torch_pruning_ratio(
                channels, channels_removed(channels, target.sparsity)
            )
    sparsity_of = {t.rule: t.sparsity for t in targets}
    coupled = {p.layer: set(p.coupled) for p in plan.pruned}
    names = {id(m): n for n, m in modules.items()}
    for rule, layers in global_rules.items():
        # one ranking over the rule's channels, each coupled set counted once (Torch-Pruning groups it)
        counted: list[str] = []
        for member in layers:
            name = names[id(member)]
            if not any(name in coupled.get(c, ()) for c in counted):
                counted.append(name)
        total = sum(int(modules[n].weight.shape[0]) for n in counted)
        ratios[tuple(layers)] = torch_pruning_ratio(total, channels_removed(total, sparsity_of[rule]))
    protected = [m for name, m in modules.items() if isinstance(m, PRUNABLE) and matches_any(name, ignore)]
    protected += [m for name, m in modules.items() if isinstance(m, PRUNABLE) and _coupling(graph, m)[1]]
    before = _output_shape(model, example)
    was = model.training
    model.eval()
    if importance is Importance.taylor:
        if gradient_batches is None:
            raise SpecError("structured: taylor importance needs data for gradients")
        _accumulate_gradients(model, gradient_batches)
    pruner = tp.pruner.MetaPruner(
        model,
        example_inputs=example,
        importance=_importance(importance),
        pruning_ratio=0.0,
        pruning_ratio_dict=ratios,
        ignored_layers=protected,
        round_to=rounds.pop(),
        customized_pruners=customized_pruners(),
    )
    pruner.step()
    model.zero_grad(set_to_none=True)
    model.train(was)
    check_runs(model, example, before)
    history: History = [
        (str(name), bool(out), [int(i) for i in idxs]) for name, out, idxs in pruner.pruning_history()
    ]
    for layer in plan.pruned:
        layer.kept = int(modules[layer.layer].weight.shape[0])
    log.info("structured: pruned %d layers, %d history entries", len(plan.pruned), len(history))
    return history, plan


def _accumulate_gradients(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> None:
    model.zero_grad(set_to_none=True)
    for x, y in batches:
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()


def _output_shape(model: nn.Module, example: torch.Tensor) -> tuple[int, ...]:
    was = model.training
    model.eval()
    with torch.no_grad():
        out = model(example)
    model.train(was)
    return tuple(out.shape)


def check_runs(model: nn.Module, example: torch.Tensor, expected: tuple[int, ...] | None = None) -> None:
    """Run `model` on `example`; a shape error raises SpecError naming the innermost layer that failed."""
    stack: list[str] = []
    failed: list[str] = []
    handles = []

    def enter(name: str) -> Any:
        return lambda module, inputs: stack.append(name)  # append returns None: inputs unchanged

    def leave(module: nn.Module, inputs: Any, output: Any) -> None:
        stack.pop()

    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_pre_hook(enter(name)))
            handles.append(module.register_forward_hook(leave))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(example)
    except RuntimeError as exc:
        failed = list(stack)
        where = failed[-1] if failed else "the model's own forward"
        raise SpecError(f"structured: layer {where!r} no longer fits after pruning: {exc}") from exc
    finally:
        model.train(was)
        for handle in handles:
            handle.remove()
    if expected is not None and tuple(out.shape) != tuple(expected):
        raise SpecError(f"structured: pruning changed the output shape from {expected} to {tuple(out.shape)}")


def replay_history(model: nn.Module, example: torch.Tensor, history: Sequence[Sequence[Any]]) -> nn.Module:
    """Apply a recorded Torch-Pruning history to a freshly built `model` (in place) and return it."""
    if not history:
        return model
    modules = dict(model.named_modules())
    entries: list[tuple[str, bool, list[int]]] = []
    for entry in history:
        if not isinstance(entry, list | tuple) or len(entry) != 3:
            raise SpecError(f"architecture: a pruning entry must be [layer, out, indices], got {entry!r}")
        name, out, idxs = entry
        if not isinstance(modules.get(str(name)), PRUNABLE):
            raise SpecError(
                f"architecture: the pruning record names {name!r}, not a prunable layer of the model"
            )
        if not isinstance(idxs, list) or any(not isinstance(i, int) or i < 0 for i in idxs):
            raise SpecError(f"architecture: indices of {name!r} must be non-negative integers")
        entries.append((str(name), bool(out), [int(i) for i in idxs]))
    graph = _graph(model, example)
    for name, out, idxs in entries:  # sizes as they are when each entry is replayed
        module = modules[name]
        current = int(module.weight.shape[0] if out else module.weight.shape[1])
        if idxs and max(idxs) >= current or len(set(idxs)) != len(idxs) or len(idxs) >= current:
            raise SpecError(f"architecture: indices for {name!r} do not fit its {current} channels")
        graph.load_pruning_history([[name, out, idxs]])
    return model
