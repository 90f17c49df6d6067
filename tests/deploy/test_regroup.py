"""A channel shuffle (ShuffleNetV2's reshape -> transpose -> reshape) held as layers, as in a module converted
from ONNX: Torch-Pruning 1.6 failed to trace it ("integer division or modulo by zero"); now the layers whose
channels reach it are refused with that reason and the others are pruned."""

from __future__ import annotations

import torch
from torch import nn

from compression_core.deploy.pruning import PruneTarget, plan_structured, prune_structured, replay_history
from compression_core.deploy.regroup import ChannelRegroup, wrap_regroups


class Reshape(nn.Module):
    """A parameterless reshape layer with a constant target, as onnx2torch converts `Reshape`."""

    def __init__(self, *shape: int) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)


class Transpose(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2)


class ShuffleNetLike(nn.Module):
    """stem -> (inner conv -> outer conv) -> channel shuffle of 2 groups -> head conv -> flatten -> linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.inner = nn.Conv2d(8, 8, 1)
        self.bn = nn.BatchNorm2d(8)
        self.outer = nn.Conv2d(8, 8, 1)
        self.group = Reshape(2, 4, 8, 8)
        self.swap = Transpose()
        self.merge = Reshape(8, 8, 8)
        self.head = nn.Conv2d(8, 6, 3, padding=1)
        self.fc = nn.Linear(6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = self.merge(self.swap(self.group(self.outer(torch.relu(self.bn(self.inner(x)))))))
        return self.fc(torch.relu(self.head(x)).mean((2, 3)))


def _model() -> tuple[ShuffleNetLike, torch.Tensor]:
    torch.manual_seed(0)
    return ShuffleNetLike().eval(), torch.randn(2, 3, 8, 8)


def test_the_shuffles_reshapes_are_wrapped_and_compute_the_same():
    model, x = _model()
    with torch.no_grad():
        before = model(x)
    assert wrap_regroups(model, x) == ["group", "merge"]
    assert isinstance(model.group, ChannelRegroup) and isinstance(model.merge, ChannelRegroup)
    assert (model.group.in_channels, model.group.out_channels) == (8, 2)
    assert wrap_regroups(model, x) == []  # idempotent
    with torch.no_grad():
        assert torch.equal(model(x), before)


def test_layers_feeding_the_shuffle_are_refused_with_the_reason_and_the_others_pruned():
    model, x = _model()
    targets = [PruneTarget(n, 0.5, 0) for n in ("stem", "inner", "outer", "head")]
    plan = plan_structured(model, x, targets)
    refused = {p.layer: p.reason for p in plan.refused}
    assert list(refused) == ["outer"]
    assert "regroups channels (group" in str(refused["outer"])
    assert "channel shuffle" in str(refused["outer"])
    history, done = prune_structured(model, x, [t for t in targets if t.layer != "outer"])
    assert {p.layer: p.kept for p in done.pruned} == {"stem": 4, "inner": 4, "head": 3}
    assert model.outer.weight.shape == (8, 4, 1, 1)  # its inputs follow `inner`; its outputs stay
    assert model(x).shape == (2, 10)
    rebuilt = replay_history(ShuffleNetLike().eval(), x, history)  # how load_model rebuilds it
    assert rebuilt.inner.weight.shape == model.inner.weight.shape
    assert rebuilt.head.weight.shape == model.head.weight.shape
