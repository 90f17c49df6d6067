"""A channel shuffle in an uploaded graph (ShuffleNetV2's `view -> transpose -> view`, exported to ONNX):
structured pruning of the converted module used to fail in Torch-Pruning ("integer division or modulo by
zero"); now a rule over every convolution is refused naming the layers that feed the shuffle, and a rule
over the others prunes them, with `model.onnx` smaller and equal to `load_model` in onnxruntime."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from compression_core import load_model
from compression_core.channels import count_parameters
from compression_core.deploy.onnx_export import ort_session
from compression_core.errors import SpecError
from compression_core.job.pipeline import compress_file
from compression_core.spec import parse_spec
from tests.sources.onnx.tiny import export


class ShuffleBlockNet(nn.Module):
    """A stem, one ShuffleNetV2-style block (half the channels through a branch, concat, shuffle), a head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.inner = nn.Conv2d(4, 8, 1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.outer = nn.Conv2d(8, 4, 1, bias=False)
        self.head = nn.Conv2d(8, 12, 1)
        self.fc = nn.Linear(12, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        keep, branch = x.chunk(2, dim=1)
        x = torch.cat((keep, self.outer(torch.relu(self.bn(self.inner(branch))))), 1)
        n, c, h, w = x.shape
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)  # the shuffle
        return self.fc(torch.relu(self.head(x)).mean((2, 3)))


@pytest.fixture(scope="module")
def shuffle_onnx(tmp_path_factory):
    torch.manual_seed(0)
    model = ShuffleBlockNet().eval()
    return export(model, torch.randn(1, 3, 8, 8), tmp_path_factory.mktemp("shuffle") / "shuffle.onnx")


def _spec(name: str) -> object:
    rules = [{"select": {"name": name, "kind": "conv"}, "steps": [{"type": "structured", "sparsity": 0.5}]}]
    return parse_spec(json.dumps({"model": {"arch": "onnx"}, "rules": rules}))


def test_a_rule_over_every_conv_is_refused_naming_the_layers_feeding_the_shuffle(shuffle_onnx, tmp_path):
    with pytest.raises(SpecError) as refused:
        compress_file(shuffle_onnx, _spec("*"), tmp_path / "out")
    assert "'outer'" in str(refused.value) and "channel shuffle" in str(refused.value)


def test_the_layers_inside_the_block_are_pruned_and_model_onnx_matches_load_model(shuffle_onnx, tmp_path):
    out = tmp_path / "out"
    metrics = compress_file(shuffle_onnx, _spec("inner*"), out)
    model = load_model(out).eval()
    assert model.get_submodule("inner").weight.shape[0] == 4
    assert metrics["structured"]["params_after"] == count_parameters(model)
    assert metrics["structured"]["params_after"] < metrics["structured"]["params_before"]
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x).numpy()
    session = ort_session(out / "model.onnx", 1)
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
