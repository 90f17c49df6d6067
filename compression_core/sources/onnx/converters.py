"""What onnx2torch 1.5.15 lacks for the graphs torch 2.14's exporters write, added through its public
registry (`onnx2torch.node_converters.add_converter`); `install()` adds them once.

- newer versions of operators whose new version only widened the types (bfloat16, int4, float8: opsets
  19, 21, 22, 23): the converter of the version before;
- `Reduce*-18` (axes as a constant input instead of an attribute), `Reshape` with `allowzero=1`, `Pad-18+`
  without the `axes` input, `Split-18` (`num_outputs`), `CastLike`, `Gelu-20` (`nn.GELU`: ConvNeXt, Swin,
  ViT, MaxViT).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

__all__ = ["install", "supported"]

# operator -> versions that only widened the input types, given the converter of the version before
_TYPE_ONLY = {
    "Abs": (13,),
    "Add": (14,),
    "AveragePool": (19, 22),
    "BatchNormalization": (15,),
    "Cast": (19, 21, 23),
    "Ceil": (13,),
    "Clip": (13,),
    "Concat": (13,),
    "Constant": (19, 21, 23),
    "ConstantOfShape": (20, 21, 23),
    "Conv": (22,),
    "ConvTranspose": (22,),
    "Div": (14,),
    "Dropout": (22,),
    "Elu": (22,),
    "Equal": (19,),
    "Erf": (13,),
    "Exp": (13,),
    "Expand": (13,),
    "Flatten": (21, 23),
    "Gather": (13,),
    "GlobalAveragePool": (22,),
    "GlobalMaxPool": (22,),
    "HardSigmoid": (22,),
    "HardSwish": (22,),
    "Identity": (19, 21, 23),
    "LeakyRelu": (16,),
    "MaxPool": (22,),
    "Mul": (14,),
    "Relu": (14,),
    "ScatterND": (18,),  # 18 added the max/min reductions, which the converter refuses as it does add/mul
    "Shape": (19, 21, 23),
    "Sigmoid": (13,),
    "Softmax": (13,),
    "Sqrt": (13,),
    "Squeeze": (21, 23),
    "Sub": (14,),
    "Tanh": (13,),
    "Transpose": (21, 23),
    "Unsqueeze": (21, 23),
}
_REDUCE_18 = (
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceProd",
    "ReduceSumSquare",
)
_state = {"installed": False}


def supported(op_type: str, opset: int) -> bool:
    """Whether an operator of the default domain at `opset` has a converter (after `install`)."""
    from onnx2torch.node_converters import get_converter

    install()
    try:
        get_converter(op_type, opset)
    except NotImplementedError:
        return False
    return True


class CastLike(nn.Module):
    def forward(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return x.to(like.dtype)


class ReshapeAllowZero(nn.Module):
    """Reshape whose zeros are literal (`allowzero=1`)."""

    def forward(self, x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        return torch.reshape(x, [int(d) for d in shape.tolist()])


def install() -> None:
    """Register the converters above (once)."""
    if _state["installed"]:
        return
    _state["installed"] = True
    from onnx2torch.node_converters import add_converter, get_converter
    from onnx2torch.node_converters.reduce import OnnxReduceStaticAxes
    from onnx2torch.onnx_graph import OnnxGraph
    from onnx2torch.onnx_node import OnnxNode
    from onnx2torch.utils.common import OnnxMapping, OperationConverterResult, get_const_value
    from onnx2torch.utils.common import onnx_mapping_from_node as mapping

    def _register(op: str, version: int, converter: Any) -> None:
        with contextlib.suppress(ValueError):  # already there (a newer onnx2torch)
            add_converter(operation_type=op, version=version)(converter)

    for op, versions in _TYPE_ONLY.items():
        for version in versions:
            try:
                previous = get_converter(op, version - 1)
            except NotImplementedError:
                continue
            _register(op, version, previous)

    def reduce18(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
        axes = None
        if len(node.input_values) > 1 and node.input_values[1]:
            axes = [int(a) for a in get_const_value(node.input_values[1], graph).tolist()]
        if not axes and node.attributes.get("noop_with_empty_axes", 0):
            return OperationConverterResult(
                nn.Identity(), OnnxMapping((node.input_values[0],), node.output_values)
            )
        module = OnnxReduceStaticAxes(node.operation_type, axes, node.attributes.get("keepdims", 1))
        return OperationConverterResult(module, OnnxMapping((node.input_values[0],), node.output_values))

    for op in _REDUCE_18:
        _register(op, 18, reduce18)

    reshape = get_converter("Reshape", 14)

    def reshape_any(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
        if node.attributes.get("allowzero", 0) == 1:
            return OperationConverterResult(ReshapeAllowZero(), mapping(node))
        return reshape(node, graph)

    for version in (19, 21, 23):  # opsets 14-18 keep onnx2torch's (normalize drops a needless allowzero)
        _register("Reshape", version, reshape_any)

    def cast_like(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
        return OperationConverterResult(CastLike(), mapping(node))

    for version in (15, 19, 21, 23):
        _register("CastLike", version, cast_like)

    pad = get_converter("Pad", 13)

    def pad18(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
        if len(node.input_values) > 3 and node.input_values[3]:
            raise NotImplementedError("Pad with an `axes` input")
        return pad(node, graph)

    for version in (18, 19, 21, 23):
        _register("Pad", version, pad18)

    def gelu(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
        approximate = node.attributes.get("approximate", "none")
        if isinstance(approximate, bytes):
            approximate = approximate.decode()
        return OperationConverterResult(nn.GELU(approximate=str(approximate)), mapping(node))

    _register("Gelu", 20, gelu)

    split = get_converter("Split", 13)

    def split18(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
        return split(node, graph)

    _register("Split", 18, split18)
