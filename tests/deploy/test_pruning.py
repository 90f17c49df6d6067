"""Torch-Pruning plans on torchvision classifiers and the built-in LeNets: physical shrinking, coupled layers,
refusals that name the layer, and the replay `load_model` relies on (random weights, small inputs)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from compression_core.channels import count_parameters
from compression_core.deploy.pruning import (
    PRUNABLE,
    PruneTarget,
    check_runs,
    plan_structured,
    prune_structured,
    replay_history,
)
from compression_core.deploy.spec import Importance, PruneScope
from compression_core.errors import SpecError
from compression_core.models import build_model

CASES = {
    "resnet18": ({"num_classes": 10}, (3, 64, 64)),
    "resnet50": ({"num_classes": 10}, (3, 64, 64)),
    "mobilenet_v2": ({"num_classes": 10}, (3, 64, 64)),
    "vgg11_bn": ({"num_classes": 10}, (3, 32, 32)),
    "lenet5": ({}, (1, 28, 28)),
    "lenet300": ({}, (784,)),
}


def _model(arch: str) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    kwargs, shape = CASES[arch]
    return build_model({"arch": arch, "kwargs": kwargs}).eval(), torch.randn(2, *shape)


def _targets(model: nn.Module, sparsity: float, kinds: tuple[type, ...] = PRUNABLE) -> list[PruneTarget]:
    return [PruneTarget(n, sparsity, 0) for n, m in model.named_modules() if isinstance(m, kinds)]


@pytest.mark.parametrize("arch", list(CASES))
def test_half_the_channels_go_and_the_history_rebuilds_the_smaller_model(arch, one_thread):
    model, example = _model(arch)
    # every conv of the torchvision nets; the LeNets' hidden linear layers too (not the class scores)
    kinds = (nn.Conv2d,) if arch == "resnet50" else PRUNABLE
    targets = _targets(model, 0.5, kinds)
    plan = plan_structured(model, example[:1], targets)
    assert [p.layer for p in plan.refused if "model's outputs" in (p.reason or "")] == (
        []
        if kinds == (nn.Conv2d,)
        else [[n for n, m in model.named_modules() if isinstance(m, PRUNABLE)][-1]]
    )
    keep = [t for t in targets if t.layer not in {p.layer for p in plan.refused}]
    before = count_parameters(model)
    small = copy.deepcopy(model)
    history, done = prune_structured(small, example[:1], keep)
    modules = dict(model.named_modules())
    for layer in done.pruned:  # each selected layer kept about half of its output channels
        assert layer.kept == int(small.get_submodule(layer.layer).weight.shape[0])
        assert layer.kept <= modules[layer.layer].weight.shape[0] // 2 + 1
    # lenet300's first layer keeps its 784 inputs, so half its width is about half its parameters
    assert count_parameters(small) < before / (1.9 if arch == "lenet300" else 2.5)
    assert small(example).shape == model(example).shape
    rebuilt = replay_history(
        build_model({"arch": arch, "kwargs": CASES[arch][0]}).eval(), example[:1], history
    )
    rebuilt.load_state_dict(small.state_dict(), strict=True)  # same shapes everywhere
    with torch.no_grad():
        assert torch.equal(rebuilt(example), small(example))


def test_residual_additions_stay_consistent_and_kept_channels_are_the_strongest(one_thread):
    model, example = _model("resnet18")
    conv1_norms = model.conv1.weight.detach().abs().sum(dim=(1, 2, 3))
    small = copy.deepcopy(model)
    prune_structured(small, example[:1], [PruneTarget("conv1", 0.5, 0)])
    # conv1's channels feed the residual stream of layer1: every block's conv2 and the next stage's inputs
    width = small.conv1.weight.shape[0]
    assert width == 32
    assert small.bn1.num_features == width
    for block in small.layer1:
        assert block.conv2.weight.shape[0] == width and block.conv1.weight.shape[1] == width
    assert small.layer2[0].downsample[0].weight.shape[1] == width
    # group importance sums over coupled layers; conv1 alone need not decide, but at most a few differ
    kept_alone = set(torch.argsort(conv1_norms, descending=True)[:32].tolist())
    survivors = {
        i
        for i in range(64)
        if any(torch.equal(small.conv1.weight[j], model.conv1.weight[i]) for j in range(32))
    }
    assert len(survivors) == 32 and len(survivors & kept_alone) >= 16


def test_a_plan_breaking_a_residual_addition_is_refused_with_the_layer_name(one_thread):
    model, example = _model("resnet18")
    targets = [PruneTarget("layer1.0.conv2", 0.5, 0)]
    plan = plan_structured(model, example[:1], targets, ignore=["conv1"])
    assert [p.layer for p in plan.refused] == ["layer1.0.conv2"]
    assert "conv1" in (plan.refused[0].reason or "") and "ignore" in (plan.refused[0].reason or "")
    with pytest.raises(SpecError, match=r"layer1\.0\.conv2.*conv1"):
        prune_structured(copy.deepcopy(model), example[:1], targets, ignore=["conv1"])
    # without the ignore the same plan is fine: the coupled layers go together
    assert plan_structured(model, example[:1], targets).refused == []


def test_refusals_name_output_layers_and_unknown_layers(one_thread):
    model, example = _model("mobilenet_v2")
    plan = plan_structured(
        model, example[:1], [PruneTarget("classifier.1", 0.5, 0), PruneTarget("features.0.1", 0.5, 0)]
    )
    reasons = {p.layer: p.reason for p in plan.refused}
    assert "model's outputs" in reasons["classifier.1"]
    assert "not a conv or linear layer (BatchNorm2d)" in reasons["features.0.1"]


def test_global_scope_ranks_a_rules_layers_together_and_round_to_rounds(one_thread):
    model, example = _model("lenet5")
    small = copy.deepcopy(model)
    targets = [
        PruneTarget(n, 0.5, 0, PruneScope.global_, Importance.l2, round_to=4)
        for n in ("conv1", "conv2", "fc1")
    ]
    _, plan = prune_structured(small, example[:1], targets)
    kept = {p.layer: p.kept for p in plan.pruned}
    assert all(k is not None and k % 4 == 0 for k in kept.values())
    total_before = 20 + 50 + 500
    assert sum(v for v in kept.values() if v is not None) <= total_before * 0.5 + 12


def test_taylor_importance_uses_gradients(one_thread):
    model, example = _model("lenet300")
    x = torch.randn(64, 784)
    y = torch.randint(0, 10, (64,))
    small = copy.deepcopy(model)
    targets = [PruneTarget("fc1", 0.5, 0, importance=Importance.taylor)]
    with pytest.raises(SpecError, match="taylor importance needs data"):
        prune_structured(copy.deepcopy(model), example[:1], targets)
    prune_structured(small, example[:1], targets, gradient_batches=[(x, y)])
    assert small.fc1.weight.shape == (150, 784) and small.fc2.weight.shape == (100, 150)
    assert all(p.grad is None for p in small.parameters())


def test_check_runs_names_the_innermost_layer_that_no_longer_fits():
    model, example = _model("resnet18")
    with torch.no_grad():
        model.layer2[0].conv1.weight = nn.Parameter(model.layer2[0].conv1.weight[:, :32].clone())
    with pytest.raises(SpecError, match=r"layer 'layer2\.0\.conv1' no longer fits"):
        check_runs(model, example[:1])


def test_replay_refuses_records_that_do_not_fit():
    model, example = _model("lenet5")
    with pytest.raises(SpecError, match="not a prunable layer"):
        replay_history(model, example[:1], [["nowhere", True, [0]]])
    with pytest.raises(SpecError, match="do not fit"):
        replay_history(model, example[:1], [["conv1", True, [0, 25]]])
