"""Normalization and conversion: the exported TinyNet becomes a module of standard layers whose state dict
is TinyNet's own (loads strictly), which computes what TinyNet computes on any batch."""

from __future__ import annotations

import warnings

import onnx
import pytest
import torch
from torch import nn

from compression_core.sources.onnx.convert import convert_graph
from compression_core.sources.onnx.normalize import normalize
from compression_core.sources.onnx.write import filled, patched, weightless
from tests.sources.onnx.tiny import TinyNet


def test_the_converted_module_has_the_exporting_models_names_and_outputs(tiny):
    path, model = tiny
    graph = normalize(onnx.load(str(path)))
    converted = convert_graph(graph)
    module = converted.module
    assert converted.unmapped == []
    assert isinstance(module.get_submodule("stem"), nn.Conv2d) and module.get_submodule("stem").bias is None
    assert isinstance(module.get_submodule("bn"), nn.BatchNorm2d)
    assert isinstance(module.get_submodule("block.1"), nn.BatchNorm2d)
    assert isinstance(module.get_submodule("head"), nn.Linear)
    mine = TinyNet()
    mine.load_state_dict(module.state_dict(), strict=True)  # num_batches_tracked included
    x = torch.randn(5, 64, generator=torch.Generator().manual_seed(1))  # exported on batch 1, run on 5
    with torch.no_grad():
        expected, got = model(x), module.eval()(x)
    assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()
    # the BatchNorms train: running statistics move in training mode
    before = module.get_submodule("bn").running_mean.clone()
    module.train()(x)
    assert not torch.equal(before, module.get_submodule("bn").running_mean)


def test_weights_go_back_into_the_graph_and_a_weightless_graph_rebuilds_the_same_module(tiny):
    path, _ = tiny
    graph = normalize(onnx.load(str(path)))
    converted = convert_graph(graph)
    state = {k: v * 0.5 if v.is_floating_point() else v for k, v in converted.module.state_dict().items()}
    out = patched(graph, converted.bindings, state)
    assert out is not None
    again = convert_graph(out).module
    assert all(torch.equal(again.state_dict()[k], state[k]) for k in converted.bindings)
    smaller = dict(state, **{"head.weight": state["head.weight"][:5]})
    assert patched(graph, converted.bindings, smaller) is None  # a changed shape: not the same graph
    empty = weightless(graph, converted.bindings)
    assert len(empty.SerializeToString()) < len(graph.SerializeToString()) / 4
    rebuilt = convert_graph(filled(empty)).module
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in state.items()}


def test_a_torchscript_export_with_folded_batchnorms_converts_and_says_which_names_are_not_mapped(
    tiny, tmp_path
):
    _, model = tiny
    path = tmp_path / "ts.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 64),), str(path), dynamo=False, opset_version=17)
    converted = convert_graph(normalize(onnx.load(str(path))))
    assert converted.unmapped, "folded conv weights have exporter names, not TinyNet's"
    assert all(name.startswith("onnx_ops.") or name.endswith(".bias") for name in converted.unmapped)
    x = torch.randn(3, 64)
    with torch.no_grad():
        assert torch.allclose(converted.module.eval()(x), model(x), atol=1e-4)


@pytest.mark.parametrize("batch", [1, 4])
def test_normalize_makes_the_batch_symbolic(tiny, batch):
    path, _ = tiny
    graph = normalize(onnx.load(str(path)))
    dim = graph.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim.dim_param == "batch" and not dim.HasField("dim_value")
    from compression_core.deploy.onnx_export import ort_session

    session_path = path.parent / "normalized.onnx"
    session_path.write_bytes(graph.SerializeToString())
    out = ort_session(session_path, 1).run(None, {"x": torch.zeros(batch, 64).numpy()})[0]
    assert out.shape == (batch, 10)


class _Chunky(nn.Module):
    """A channel split (`chunk`: the dynamo exporter's SplitToSequence) and a BatchNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.conv(x.reshape(-1, 1, 8, 8)).chunk(2, dim=1)
        return self.fc(torch.flatten(self.norm(a) * b, 1))


def test_sequence_ops_and_training_mode_batchnorms_are_normalized_away(tmp_path):
    torch.manual_seed(0)
    model = _Chunky().eval()
    x = torch.randn(3, 64)
    dynamo = tmp_path / "chunky.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x[:1],), str(dynamo), dynamo=True, optimize=False, external_data=False)
        training = tmp_path / "training.onnx"  # TorchScript exporter, BatchNorm in training mode
        copy = _Chunky()
        copy.load_state_dict(model.state_dict())  # tracing in training mode moves the running statistics
        torch.onnx.export(
            copy.train(), (x[:2],), str(training), dynamo=False, training=torch.onnx.TrainingMode.TRAINING
        )
    assert "SplitToSequence" in {n.op_type for n in onnx.load(str(dynamo)).graph.node}
    for path, exported in ((dynamo, model), (training, copy.eval())):  # the statistics as exported
        converted = convert_graph(normalize(onnx.load(str(path))))
        assert isinstance(converted.module.get_submodule("norm"), nn.BatchNorm2d), path.name
        _Chunky().load_state_dict(converted.module.state_dict(), strict=True)
        with torch.no_grad():
            assert torch.allclose(converted.module.eval()(x), exported(x), atol=1e-4), path.name


def test_module_names_with_a_hyphen_are_mapped_back(tmp_path):
    """RegNet names its blocks `block1-0` (torchvision's own names): the exporter keeps them in the
    initializer names, so they map back (they were listed as unmapped: 343 names of regnet_y_8gf)."""
    from collections import OrderedDict

    from tests.sources.onnx.tiny import export

    torch.manual_seed(0)
    model = nn.Sequential(
        OrderedDict(
            [
                ("block1-0", nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())),
                ("pool", nn.AdaptiveAvgPool2d(1)),
                ("flat", nn.Flatten()),
                ("head-1", nn.Linear(4, 3)),
            ]
        )
    ).eval()
    path = export(model, torch.randn(1, 3, 8, 8), tmp_path / "hyphen.onnx")
    converted = convert_graph(normalize(onnx.load(str(path))))
    assert converted.unmapped == []
    assert isinstance(converted.module.get_submodule("block1-0.0"), nn.Conv2d)
    model.load_state_dict(converted.module.state_dict(), strict=True)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(converted.module.eval()(x), model(x), rtol=1e-4, atol=1e-6)


class _StridedLinear(nn.Module):
    """ConvNeXt's two export patterns: `as_strided` (lowered to a flatten-to-1-D `Gather` of the exported
    batch) and a `Linear` on a 4-D input (`MatMul(x, Transpose(weight))`)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 5)
        self.head = nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        pooled = torch.as_strided(y.mean((2, 3), keepdim=True), (y.shape[0], 4, 1, 1), (4, 1, 1, 1))
        z = self.fc(y.permute(0, 2, 3, 1)).mean((1, 2))
        return self.head(z) + pooled.flatten(1).sum(1, keepdim=True)


def test_as_strided_runs_per_sample_and_a_4d_linears_weight_stays_a_named_parameter(tmp_path):
    from tests.sources.onnx.tiny import export

    torch.manual_seed(0)
    model = _StridedLinear().eval()
    path = export(model, torch.randn(1, 3, 8, 8), tmp_path / "strided.onnx")
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert "Gather" in ops and "MatMul" in ops  # the exporter's patterns this test is about
    converted = convert_graph(normalize(onnx.load(str(path))))
    assert converted.unmapped == []
    assert "fc.weight" in dict(converted.module.named_parameters())  # trained, and in model.pth
    model.load_state_dict(converted.module.state_dict(), strict=True)
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))  # exported on batch 1
    with torch.no_grad():
        expected, got = model(x), converted.module.eval()(x)
    assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()


def test_a_small_vit_runs_on_any_batch_with_its_own_names(tmp_path):
    """torchvision's VisionTransformer exported on a batch of 1: the class token's `Expand`, the attention's
    sequence-first reshapes (`[L, 1, 3, E]`, `[L, heads, d]`, `[L, E]`) all follow the batch; the class
    token is a parameter under its own name."""
    import torchvision

    from tests.sources.onnx.tiny import export

    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(
        image_size=16, patch_size=8, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=3
    ).eval()
    nn.init.normal_(model.heads.head.weight)  # torchvision starts it at zero: the outputs would be zero
    path = export(model, torch.randn(1, 3, 16, 16), tmp_path / "vit.onnx")
    converted = convert_graph(normalize(onnx.load(str(path))))
    assert converted.unmapped == []
    assert "class_token" in dict(converted.module.named_parameters())
    model.load_state_dict(converted.module.state_dict(), strict=True)
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = model(x), converted.module.eval()(x)
    assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()
