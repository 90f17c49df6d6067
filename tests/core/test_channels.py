"""One rule for how many channels a structured sparsity removes, followed by both implementations: the
data-free step that zeroes channels (methods/structured) and the physical pruning with Torch-Pruning
(deploy/pruning). Before the rule had one home, 0.3 of 5 channels removed 2 in one and 1 in the other."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from compression_core.channels import channels_removed, count_parameters, torch_pruning_ratio
from compression_core.deploy.pruning import PruneTarget, plan_structured, prune_structured
from compression_core.deploy.spec import PruneScope
from compression_core.methods.structured.apply import removed_channels


@pytest.mark.parametrize(
    ("channels", "sparsity", "removed"),
    [
        (5, 0.3, 2),  # 1.5: halves round up
        (5, 0.5, 3),  # 2.5 (Python's round would say 2)
        (7, 0.5, 4),  # 3.5 (round would say 4; int() 3)
        (10, 0.25, 3),
        (5, 0.7, 4),  # 0.7 * 5 is 3.4999999999999996 in floating point: still 3.5
        (10, 0.21, 2),
        (3, 0.9, 2),  # at least one channel stays
        (1, 0.5, 0),
        (8, 0.0, 0),
    ],
)
def test_the_rule_is_the_nearest_count_halves_up_and_one_channel_stays(channels, sparsity, removed):
    assert channels_removed(channels, sparsity) == removed


def test_torch_prunings_own_formula_removes_exactly_the_count_it_is_given():
    for channels in range(1, 130):
        for step in range(100):
            n = channels_removed(channels, step / 100)
            ratio = torch_pruning_ratio(channels, n)
            # base_pruner: n_pruned = len(imp) - int(initial_channels * (1 - pruning_ratio))
            assert channels - int(channels * (1 - ratio)) == n, (channels, step / 100)


class Chain(nn.Module):
    """Two hidden linear layers of 5 and 7 units: the widths where the roundings differed."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 5)
        self.b = nn.Linear(5, 7)
        self.head = nn.Linear(7, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.b(torch.relu(self.a(x)))))


@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.7, 0.9])
def test_both_structured_prunings_remove_the_same_channels_count(sparsity):
    torch.manual_seed(0)
    model = Chain().eval()
    example = torch.randn(1, 4)
    expected = {"a": channels_removed(5, sparsity), "b": channels_removed(7, sparsity)}
    if sparsity == 0.3:
        assert expected == {"a": 2, "b": 2}  # the case: 0.3 of 5 channels is 2 in both
    zeroed = {name: len(removed_channels(getattr(model, name).weight, sparsity)) for name in ("a", "b")}
    assert zeroed == expected
    targets = [PruneTarget("a", sparsity, 0), PruneTarget("b", sparsity, 0)]
    planned = {p.layer: p.kept for p in plan_structured(model, example, targets).pruned}
    small = copy.deepcopy(model)
    _, done = prune_structured(small, example, targets)
    kept = {p.layer: p.kept for p in done.pruned}
    assert kept == planned == {"a": 5 - expected["a"], "b": 7 - expected["b"]}
    assert small.a.out_features == kept["a"] and small.b.out_features == kept["b"]
    assert count_parameters(small) == 4 * kept["a"] + kept["a"] + kept["a"] * kept["b"] + kept["b"] + (
        kept["b"] * 2 + 2
    )


def test_a_global_rule_removes_the_rules_count_over_all_its_channels():
    torch.manual_seed(0)
    model = Chain().eval()
    targets = [PruneTarget(n, 0.2, 0, PruneScope.global_) for n in ("a", "b")]
    _, done = prune_structured(model, torch.randn(1, 4), targets)
    kept = sum(p.kept or 0 for p in done.pruned)
    assert 12 - kept == channels_removed(12, 0.2) == 2  # 2.4 -> 2 (Torch-Pruning alone: 12 - int(9.6) = 3)


def test_count_parameters_counts_parameters_not_buffers():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    assert count_parameters(model) == 3 * 4 + 4 + 4 + 4
