"""An ONNX source's outputs.

- `patched(graph, bindings, state_dict)`: the (normalized) uploaded graph with the job's weights in its
  initializers, when every bound tensor kept its shape (every shape-preserving method): `model.onnx`;
- `weightless(graph, bindings)`: the graph with the bound initializers' data left out, which
  `load_model(out_dir)` rebuilds the unpruned module from (zeros) before replaying the pruning and loading
  `model.pth`: `architecture.onnx`, written when structured pruning changed the shapes (the deployment stage
  then exports the smaller module as `model.onnx`, its shape constants following, checked in onnxruntime);
- `filled(graph)`: the inverse for `rebuild`: empty initializers become zeros of their declared shape.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from compression_core.errors import InputError
from compression_core.io import atomic_write_bytes
from compression_core.sources.onnx.check import MAX_ELEMENTS
from compression_core.sources.onnx.convert import Binding

__all__ = ["filled", "patched", "save", "weightless"]


def _array(tensor: torch.Tensor, binding: Binding, like: onnx.TensorProto) -> np.ndarray:
    value = tensor.detach().cpu()
    if binding.transposed:
        value = value.t()
    dtype = onnx.helper.tensor_dtype_to_np_dtype(like.data_type)
    return value.to(torch.float64 if dtype == np.float64 else torch.float32).numpy().astype(dtype)


def patched(
    graph: onnx.ModelProto, bindings: Mapping[str, Binding], state_dict: Mapping[str, torch.Tensor]
) -> onnx.ModelProto | None:
    """`graph` with `state_dict`'s tensors in their initializers; None when a shape changed."""
    out = onnx.ModelProto()
    out.CopyFrom(graph)
    initializers = {t.name: t for t in out.graph.initializer}
    for key, binding in bindings.items():
        like = initializers.get(binding.initializer)
        if key not in state_dict or like is None:
            return None
        array = _array(state_dict[key], binding, like)
        if tuple(array.shape) != tuple(like.dims):
            return None
        like.CopyFrom(numpy_helper.from_array(array, name=like.name))
    return out


def weightless(graph: onnx.ModelProto, bindings: Mapping[str, Binding]) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(graph)
    bound = {b.initializer for b in bindings.values()}
    for tensor in out.graph.initializer:
        if tensor.name in bound:
            tensor.ClearField("raw_data")
            for typed in ("float_data", "double_data", "int32_data", "int64_data"):
                tensor.ClearField(typed)
    return out


def filled(graph: onnx.ModelProto) -> onnx.ModelProto:
    total = 0
    for tensor in graph.graph.initializer:
        count = math.prod(tensor.dims)
        if count == 0 or tensor.HasField("raw_data") or len(tensor.float_data) or len(tensor.int64_data):
            continue
        total += count
        if total > MAX_ELEMENTS:
            raise InputError(f"{tensor.name}: the graph's weights exceed {MAX_ELEMENTS} values")
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
        tensor.CopyFrom(numpy_helper.from_array(np.zeros(tuple(tensor.dims), dtype=dtype), name=tensor.name))
    return graph


def save(graph: onnx.ModelProto, path: Path) -> Path:
    atomic_write_bytes(path, graph.SerializeToString())
    return path
