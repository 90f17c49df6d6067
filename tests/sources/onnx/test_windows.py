"""A Swin-like block exported on a batch of 1 (torchvision's Swin V1/V2 write these patterns): shifted
windows (`torch.roll`, which the exporter lowers to slices whose shapes inference loses), a window partition
whose reshape merges the batch of 1 into the window count (`[4, 16, 8]`), `F.normalize` (an `Expand` to a
shape holding that count), `clamp(max=...)` (a `Clip` with no lower bound), a LayerNorm after the rolled
windows, an integer buffer that indexes a parameter (`relative_position_index`), and a bias zeroed in part
in `forward` (a Swin V2's qkv bias). The converted module
runs on any batch, and its state dict is the class's own, the integer buffer included."""

from __future__ import annotations

import math

import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from compression_core.sources.onnx import OnnxSource
from compression_core.sources.onnx.convert import convert_graph
from compression_core.sources.onnx.normalize import named_by_model, normalize
from tests.sources.onnx.tiny import export


class ShiftedWindows(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 8, 2, 2)  # 16x16 -> 8x8 tokens of 8 channels
        self.qkv = nn.Linear(8, 24)
        self.logit_scale = nn.Parameter(torch.full((1,), 0.5))
        self.bias_table = nn.Parameter(torch.randn(7))
        self.register_buffer("relative_index", torch.randint(0, 7, (16, 16), generator=torch.Generator()))
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x).permute(0, 2, 3, 1)
        b, h, w, c = x.shape
        x = torch.roll(x, shifts=(-2, -2), dims=(1, 2))
        windows = x.view(b, 2, 4, 2, 4, c).permute(0, 1, 3, 2, 4, 5).reshape(b * 4, 16, c)
        bias = self.qkv.bias.clone()  # a Swin V2's qkv bias: the keys' third zeroed in forward
        bias[c : 2 * c].zero_()
        q, k, v = (
            F.linear(windows, self.qkv.weight, bias).reshape(windows.size(0), 16, 3, c).permute(2, 0, 1, 3)
        )
        attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
        attn = attn * torch.clamp(self.logit_scale, max=math.log(100.0)).exp()
        attn = attn + self.bias_table[self.relative_index]
        out = attn.softmax(-1) @ v
        out = out.view(b, 2, 2, 4, 4, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
        out = self.norm(torch.roll(out, shifts=(2, 2), dims=(1, 2)))
        return self.head(out.mean((1, 2)))


def test_shifted_windows_run_on_any_batch_with_the_class_names(tmp_path):
    torch.manual_seed(0)
    model = ShiftedWindows().eval()
    path = export(model, torch.randn(1, 3, 16, 16), tmp_path / "windows.onnx")
    converted = convert_graph(normalize(onnx.load(str(path))))
    state = converted.module.state_dict()
    assert set(state) == set(model.state_dict())  # no lifted or folded constants, the integer buffer kept
    assert torch.equal(state["relative_index"], model.relative_index)
    model.load_state_dict(state, strict=True)
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = model(x), converted.module.eval()(x)
    assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()


def test_the_source_checks_the_conversion_against_the_upload_on_its_exported_batch(tmp_path):
    """`OnnxSource.converted` runs the uploaded file itself in onnxruntime on the batch it was exported
    with: a normalization that changed what the graph computes there is an InputError, not a wrong model."""
    import pytest

    from compression_core.errors import InputError
    from compression_core.sources.onnx import verify

    torch.manual_seed(0)
    model = ShiftedWindows().eval()
    path = export(model, torch.randn(1, 3, 16, 16), tmp_path / "windows.onnx")
    converted = OnnxSource(path).converted()  # checked on batch 2 and on the upload's batch of 1
    with torch.no_grad():
        converted.module.get_submodule("head").bias.add_(1.0)  # now it computes something else
    with pytest.raises(InputError, match="uploaded graph on its exported batch"):
        verify(converted.module, path, (3, 16, 16), batch=1)


@pytest.mark.parametrize(
    ("name", "own"),
    [
        ("layer1.0.conv1.weight", True),
        ("class_token", True),  # a ViT's, at the top level
        ("features.1.0.attn.relative_position_index", True),
        ("val_12", False),
        ("val_114__node__unsafe_view_3", False),  # what normalize derives from an exporter's name
        ("onnx::Conv_5", False),
        ("features.1.1.attn.lifted_tensor_0", False),  # torch.export's lifted constants (Swin)
        ("scalar_tensor_default_3", False),
        ("zeros_like_3", False),  # a folded constant named after its op's node (torchvision's Swin V2)
    ],
)
def test_exporter_names_are_told_from_the_models_own(name: str, own: bool) -> None:
    assert named_by_model(name) is own


def test_shape_inference_runs_on_a_copy_without_the_weights_data(tmp_path):
    """Normalization infers shapes up to nine times on a probe without the float weights' data: it
    declares each large float initializer as an input of its type and shape, keeps the integer ones (the
    shape targets, the window index) and the small floats, and infers every value's shape as on the model."""
    from compression_core.sources.onnx.normalize import _KEPT_FLOAT_ELEMENTS, _weightless

    torch.manual_seed(0)
    model = normalize(onnx.load(export(ShiftedWindows(), torch.randn(1, 3, 16, 16), tmp_path / "w.onnx")))
    probe = _weightless(model)
    kept = {t.name for t in probe.graph.initializer}
    for tensor in model.graph.initializer:
        small_or_integer = (
            tensor.data_type != onnx.TensorProto.FLOAT or math.prod(tensor.dims) <= _KEPT_FLOAT_ELEMENTS
        )
        assert (tensor.name in kept) == small_or_integer, tensor.name
    assert "relative_index" in kept and "qkv.weight" not in kept
    assert {"qkv.weight", "embed.weight"} <= {v.name for v in probe.graph.input}
    assert probe.ByteSize() < model.ByteSize()

    def shapes(m: onnx.ModelProto) -> dict[str, list[int | str]]:
        inferred = onnx.shape_inference.infer_shapes(m)
        return {
            v.name: [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim]
            for v in inferred.graph.value_info
        }

    assert shapes(probe) == shapes(model) and len(shapes(model)) > 20
