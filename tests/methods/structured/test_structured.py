from __future__ import annotations

import json

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import save_file
from torch import nn

from compression_core.channels import channels_removed
from compression_core.errors import SpecError
from compression_core.format import decode_records, decode_state_dict
from compression_core.job.pipeline import compress_file
from compression_core.methods.structured.apply import (
    chain_links,
    channel_norms,
    removed_channels,
    shrink_model,
    shrunk_architecture,
    zero_channels,
)
from compression_core.methods.structured.spec import StructuredStep
from compression_core.models import build_model
from compression_core.spec import Spec, parse_spec


class SmallConvNet(nn.Module):
    """conv-BN-ReLU x2, pooling, a flatten into a linear head: the chain shrink_model handles."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 12, 3)
        self.bn2 = nn.BatchNorm2d(12)
        self.fc1 = nn.Linear(12 * 3 * 3, 20)
        self.fc2 = nn.Linear(20, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        x = torch.relu(self.bn2(self.conv2(x)))
        x = nn.functional.adaptive_avg_pool2d(x, 3).flatten(1)
        return self.fc2(torch.relu(self.fc1(x)))


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(6, 6)
        self.b = nn.Linear(6, 6)
        self.head = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.b(torch.relu(self.a(x))) + x)


@pytest.fixture
def net() -> SmallConvNet:
    torch.manual_seed(0)
    model = SmallConvNet()
    for bn in (model.bn1, model.bn2):  # non-trivial statistics and affine parameters
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        nn.init.uniform_(bn.weight, 0.5, 1.5)
        nn.init.uniform_(bn.bias, -0.2, 0.2)
    return model.eval()


def test_removes_exactly_the_weakest_channels():
    torch.manual_seed(0)
    w = torch.randn(10, 4, 3, 3)
    w[[2, 7]] *= 0.01
    assert channel_norms(w, 0, "l1").shape == (10,)
    assert torch.allclose(channel_norms(w, 0, "l2"), w.reshape(10, -1).norm(dim=1).double())
    removed = removed_channels(w, 0.2, norm="l2")
    assert removed.tolist() == [2, 7]
    for sparsity in (0.0, 0.25, 0.5, 0.75, 0.95):
        assert len(removed_channels(w, sparsity)) == channels_removed(10, sparsity)
    assert [len(removed_channels(w, s)) for s in (0.25, 0.95)] == [3, 9]  # halves up; one channel stays


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_spec_step_zeroes_whole_channels(tmp_path, norm):
    torch.manual_seed(0)
    state = {
        "conv.weight": torch.randn(16, 3, 3, 3),
        "conv.bias": torch.randn(16),
        "fc.weight": torch.randn(7, 30),
    }
    path = tmp_path / "m.safetensors"
    save_file(state, str(path))
    rules = [
        {"select": {"name": "conv.weight"}, "steps": [{"type": "structured", "sparsity": 0.5, "norm": norm}]},
        {
            "select": {"name": "fc.weight"},
            "steps": [{"type": "structured", "sparsity": 0.3, "dim": 1}, {"type": "quantize", "k": 4}],
        },
    ]
    metrics = compress_file(path, parse_spec(json.dumps({"rules": rules})), tmp_path / "out")
    decoded = decode_state_dict(tmp_path / "out" / "model.bin")
    conv = decoded["conv.weight"]
    zero = (conv.reshape(16, -1) == 0).all(dim=1)
    assert int(zero.sum()) == 8
    kept_norms = channel_norms(state["conv.weight"], 0, norm)
    assert kept_norms[zero].max() <= kept_norms[~zero].min()  # the weakest went
    assert torch.equal(conv[~zero], state["conv.weight"][~zero])  # the others are untouched
    fc = decoded["fc.weight"]
    assert int((fc == 0).all(dim=0).sum()) == round(0.3 * 30)
    assert torch.unique(fc[:, (fc != 0).any(dim=0)]).numel() <= 4
    records = {r.name: r for r in decode_records((tmp_path / "out" / "model.bin").read_bytes())[0]}
    assert (
        records["conv.weight"].method == "structured" and records["conv.weight"].positions.numel() == 8 * 27
    )
    assert records["fc.weight"].method == "structured+quantize"
    assert torch.equal(decoded["conv.bias"], state["conv.bias"])
    entry = next(e for e in metrics["tensors"] if e["name"] == "conv.weight")
    assert entry["nonzeros"] == 8 * 27


def test_spec_step_validation():
    with pytest.raises(ValidationError):
        StructuredStep(sparsity=1.0)
    with pytest.raises(ValidationError):
        Spec.model_validate(
            {"rules": [{"steps": [{"type": "structured", "sparsity": 0.5}, {"type": "prune", "keep": 3}]}]}
        )
    with pytest.raises(ValidationError):
        StructuredStep(sparsity=0.5, norm="l3")
    assert StructuredStep(sparsity=0.5).norm == "l1"


def test_shrunk_model_equals_the_zero_channel_model(net):
    example = torch.randn(4, 3, 12, 12)
    ratios = {"conv1": 0.5, "conv2.weight": 0.25, "fc1": 0.4}
    small = shrink_model(net, ratios, example=example)
    assert (small.conv1.out_channels, small.bn1.num_features, small.conv2.in_channels) == (4, 4, 4)
    assert small.conv2.weight.shape == (9, 4, 3, 3) and small.bn2.running_mean.shape == (9,)
    assert small.fc1.weight.shape == (12, 9 * 3 * 3) and small.fc2.weight.shape == (5, 12)
    links = chain_links(net, example)
    assert links["conv1"].norms == ["bn1"] and links["conv2"].consumer == "fc1" and links["conv2"].block == 9
    plan = {
        "conv1": removed_channels(net.conv1.weight, 0.5),
        "conv2": removed_channels(net.conv2.weight, 0.25),
        "fc1": removed_channels(net.fc1.weight, 0.4),
    }
    import copy

    zeroed = zero_channels(copy.deepcopy(net), plan, links).eval()
    x = torch.randn(8, 3, 12, 12)
    with torch.no_grad():
        assert torch.allclose(small(x), zeroed(x), atol=1e-5)
        assert not torch.allclose(small(x), net(x), atol=1e-3)  # something was removed
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in net.parameters())


def test_shrink_refuses_what_it_cannot_remove():
    torch.manual_seed(0)
    example = torch.randn(2, 6)
    with pytest.raises(SpecError, match="plain chain"):
        shrink_model(Residual(), {"b": 0.5}, example=example)
    with pytest.raises(SpecError, match="no following layer"):
        shrink_model(Residual(), {"head": 0.5}, example=example)
    with pytest.raises(SpecError, match="not a conv or linear"):
        shrink_model(Residual(), {"nothing": 0.5}, example=example)


def test_shrunk_builtin_architectures_rebuild_from_kwargs():
    torch.manual_seed(0)
    for arch, kwargs, ratios in (
        ("mlp", {"sizes": [64, 48, 32, 10]}, {"fc1": 0.5, "fc2": 0.25}),
        ("lenet300", {"in_features": 64}, {"fc1": 0.5, "fc2": 0.5}),
    ):
        model = build_model({"arch": arch, "kwargs": kwargs})
        example = torch.randn(3, 64)
        small = shrink_model(model, ratios, example=example)
        new_kwargs = shrunk_architecture(arch, kwargs, small)
        rebuilt = build_model({"arch": arch, "kwargs": new_kwargs})
        rebuilt.load_state_dict(small.state_dict())  # strict: the kwargs describe the smaller model
        with torch.no_grad():
            assert torch.equal(rebuilt(example), small(example))


def test_with_a_model_the_job_removes_the_channels_physically(tmp_path):
    """With `model` the structured step goes through Torch-Pruning (compression_core/deploy/): model.pth holds
    the smaller tensors and architecture.json rebuilds them (tests/deploy/ cover the networks)."""
    from compression_core import load_model

    torch.manual_seed(0)
    mlp = {"arch": "mlp", "kwargs": {"sizes": [64, 48, 10]}}
    path = tmp_path / "mlp.safetensors"
    save_file({k: v.contiguous() for k, v in build_model(mlp).state_dict().items()}, str(path))
    step = {"type": "structured", "sparsity": 0.5, "norm": "l2"}
    rules = [{"select": {"name": "fc1.weight"}, "steps": [step]}]
    spec = parse_spec(json.dumps({"rules": rules, "model": mlp, "data": {"builtin": "digits"}}))
    metrics = compress_file(path, spec, tmp_path / "out")
    report = metrics["structured"]
    assert report["method"] == "torch-pruning"
    assert [(p["layer"], p["channels"], p["kept"]) for p in report["pruned"]] == [("fc1", 48, 24)]
    assert report["params_after"] == 64 * 24 + 24 + 24 * 10 + 10 < report["params_before"]
    pth = torch.load(tmp_path / "out" / "model.pth", weights_only=True)
    assert pth["fc1.weight"].shape == (24, 64) and pth["fc2.weight"].shape == (10, 24)
    model = load_model(tmp_path / "out")
    assert metrics["evaluation"]["after"]["samples"] == 360
    x = torch.randn(3, 64)
    with torch.no_grad():
        assert model(x).shape == (3, 10)
