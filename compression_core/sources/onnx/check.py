"""The check of an uploaded ONNX file, from the protobuf alone: parsed, never executed, nothing allocated
past the file's own size. Each refusal names the node or tensor, its op type, and what to do.

- unreadable (415, `InputError`): over `MAX_BYTES`, not a protobuf (truncated), no graph, weights in
  external data files (refused whatever they point at: save the weights inside the file), a tensor whose
  declared shape does not match the bytes it carries (a 2 GB tensor declared in a 1 KB file), sparse or
  string tensors;
- not convertible (422, `UnsupportedModel`): an opset outside [`MIN_OPSET`, the installed onnx's], an
  operator of another domain, control flow (`Loop`, `Scan`, `If`: any subgraph), an operator the converter
  lacks (`converters.supported`; the sequence operators `normalize` folds into a Split are checked again
  after normalization, `check_normalized`), more than one input or output, an input that is not a float
  tensor of bounded size, a `ConstantOfShape` larger than `MAX_ELEMENTS`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from compression_core.errors import InputError, UnsupportedModel

__all__ = [
    "MAX_BYTES",
    "MAX_NODES",
    "MIN_OPSET",
    "CheckedGraph",
    "check_model",
    "check_normalized",
    "read_checked",
]

MAX_BYTES = (1 << 31) - 1  # protobuf's own limit; the service's upload limit applies first
MAX_NODES = 100_000
MAX_ELEMENTS = 1 << 28  # of the input sample and of any tensor a constant shape declares
MIN_OPSET = 9
CONTROL_FLOW = {"Loop", "Scan", "If", "SequenceMap"}
# what the dynamo exporter writes without its optimizer and `normalize` folds away (a chunk's
# SplitToSequence -> SequenceAt becomes a Split): allowed in the upload, checked again once normalized
FOLDED = {"SplitToSequence", "SequenceAt", "SequenceConstruct", "ConcatFromSequence", "SequenceEmpty"}
_ITEMSIZE: dict[int, int] = {
    onnx.TensorProto.FLOAT: 4,
    onnx.TensorProto.DOUBLE: 8,
    onnx.TensorProto.FLOAT16: 2,
    onnx.TensorProto.BFLOAT16: 2,
    onnx.TensorProto.INT64: 8,
    onnx.TensorProto.INT32: 4,
    onnx.TensorProto.INT16: 2,
    onnx.TensorProto.INT8: 1,
    onnx.TensorProto.UINT8: 1,
    onnx.TensorProto.UINT16: 2,
    onnx.TensorProto.UINT32: 4,
    onnx.TensorProto.UINT64: 8,
    onnx.TensorProto.BOOL: 1,
}
_FLOAT_INPUTS = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE}
_EXPORT_HINT = (
    "export the model without it (plain tensors and layers; `torch.onnx.export(model, (x,), path, "
    "dynamo=True, optimize=False)`), or replace that layer"
)


@dataclass(frozen=True)
class CheckedGraph:
    opset: int
    input_name: str
    input_shape: tuple[int | None, ...]  # None: a symbolic dimension
    nodes: int
    parameters: int


def _typed_count(tensor: onnx.TensorProto) -> int:
    return max(
        len(tensor.float_data),
        len(tensor.int32_data),
        len(tensor.int64_data),
        len(tensor.double_data),
        len(tensor.uint64_data),
    )


def _check_tensor(tensor: onnx.TensorProto, where: str, file_bytes: int) -> int:
    """The tensor's element count, after checking its declared shape against the data it carries."""
    name = f"{where} {tensor.name!r}" if tensor.name else where
    if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.external_data:
        location = next((e.value for e in tensor.external_data if e.key == "location"), "?")
        raise InputError(
            f"{name}: its data is in an external file ({location!r}); external data is not accepted: "
            "save the model with the weights inside (`onnx.save(model, path, save_as_external_data=False)`, "
            "or `torch.onnx.export(..., external_data=False)`)"
        )
    if any(d < 0 for d in tensor.dims):
        raise InputError(f"{name}: negative dimension in {list(tensor.dims)}")
    itemsize = _ITEMSIZE.get(tensor.data_type)
    if itemsize is None:
        raise InputError(
            f"{name}: data type {onnx.TensorProto.DataType.Name(tensor.data_type)} is not supported "
            "(float, integer and bool tensors are)"
        )
    count = math.prod(tensor.dims)
    if count * itemsize > file_bytes:
        raise InputError(
            f"{name}: declares shape {list(tensor.dims)} ({count * itemsize:,} bytes) in a "
            f"{file_bytes:,}-byte file; the file is truncated or corrupt"
        )
    carried = len(tensor.raw_data) // itemsize if tensor.HasField("raw_data") else _typed_count(tensor)
    if tensor.HasField("raw_data") and len(tensor.raw_data) != count * itemsize or carried != count:
        raise InputError(
            f"{name}: declares shape {list(tensor.dims)} ({count} values) but carries {carried}; the file "
            "is truncated or corrupt"
        )
    return count


def _check_nodes(
    nodes: Iterable[onnx.NodeProto],
    opset: int,
    functions: set[tuple[str, str]],
    initializers: dict[str, onnx.TensorProto],
    file_bytes: int,
    folded: bool = False,
) -> int:
    from compression_core.sources.onnx.converters import supported

    count = 0
    for node in nodes:
        count += 1
        label = f"node {node.name!r} (op type {node.op_type})"
        if node.op_type in CONTROL_FLOW or any(
            a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute
        ):
            raise UnsupportedModel(
                f"{label}: control flow (a subgraph) cannot become a trainable module; export with the loop "
                "unrolled and no data-dependent branches (trace with fixed shapes), or remove it"
            )
        if (node.domain, node.op_type) in functions:
            continue
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedModel(
                f"{label}: operators of domain {node.domain!r} are not supported (only the standard ONNX "
                f"domain); {_EXPORT_HINT}"
            )
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.TENSOR:
                _check_tensor(attribute.t, f"{label} attribute {attribute.name}", file_bytes)
            elif attribute.type == onnx.AttributeProto.SPARSE_TENSOR:
                raise InputError(f"{label}: sparse tensor attributes are not supported")
        if node.op_type == "ConstantOfShape" and node.input and node.input[0] in initializers:
            from onnx import numpy_helper

            shape = numpy_helper.to_array(initializers[node.input[0]])
            if shape.size > 16 or math.prod(int(d) for d in shape.reshape(-1)) > MAX_ELEMENTS:
                raise UnsupportedModel(f"{label}: makes a tensor of shape {shape.tolist()}, over the limit")
        if not supported(node.op_type, opset) and (folded or node.op_type not in FOLDED):
            raise UnsupportedModel(
                f"{label}: operator {node.op_type} (opset {opset}) cannot be converted to PyTorch here; "
                f"{_EXPORT_HINT}"
            )
    return count


def check_normalized(model: onnx.ModelProto) -> None:
    """The operators of a normalized graph, each against the converters (what folding did not remove)."""
    opsets = {o.domain: o.version for o in model.opset_import}
    opset = opsets.get("", opsets.get("ai.onnx")) or MIN_OPSET
    initializers = {t.name: t for t in model.graph.initializer}
    _check_nodes(model.graph.node, opset, set(), initializers, MAX_BYTES, folded=True)


def check_model(model: onnx.ModelProto, file_bytes: int) -> CheckedGraph:
    """Check a parsed model (see the module docstring); `file_bytes` bounds every declared tensor."""
    graph = model.graph
    if not graph.node or not graph.output:
        raise InputError("not an ONNX model: no graph (nodes and outputs)")
    if not 3 <= model.ir_version <= onnx.IR_VERSION:
        raise UnsupportedModel(
            f"ONNX IR version {model.ir_version} is not supported (3 to {onnx.IR_VERSION})"
        )
    opsets = {o.domain: o.version for o in model.opset_import}
    opset = opsets.get("", opsets.get("ai.onnx"))
    newest = onnx.defs.onnx_opset_version()
    if opset is None or not MIN_OPSET <= opset <= newest:
        raise UnsupportedModel(
            f"opset {opset} of the standard domain is not supported ({MIN_OPSET} to {newest}); export with "
            f"`opset_version` in that range"
        )
    if graph.sparse_initializer:
        raise InputError(f"sparse initializer {graph.sparse_initializer[0].values.name!r} is not supported")
    parameters = 0
    initializers: dict[str, onnx.TensorProto] = {}
    for tensor in graph.initializer:
        parameters += _check_tensor(tensor, "initializer", file_bytes)
        initializers[tensor.name] = tensor
    functions = {(f.domain, f.name) for f in model.functions}
    nodes = _check_nodes(graph.node, opset, functions, initializers, file_bytes)
    for function in model.functions:
        nodes += _check_nodes(function.node, opset, functions, {}, file_bytes)
    if nodes > MAX_NODES:
        raise UnsupportedModel(f"{nodes} nodes is over the limit of {MAX_NODES}")
    inputs = [v for v in graph.input if v.name not in initializers]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise UnsupportedModel(
            f"the graph has {len(inputs)} inputs and {len(graph.output)} outputs; one input tensor and one "
            "output tensor are supported"
        )
    (value,) = inputs
    tensor_type = value.type.tensor_type
    if not value.type.HasField("tensor_type") or tensor_type.elem_type not in _FLOAT_INPUTS:
        raise UnsupportedModel(f"input {value.name!r}: a float tensor is expected")
    dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim)
    if (
        not dims
        or math.prod(d or 1 for d in dims) > MAX_ELEMENTS
        or any(d is not None and d > 1 << 20 for d in dims)
    ):
        raise UnsupportedModel(f"input {value.name!r}: shape {list(dims)} is not a bounded tensor shape")
    return CheckedGraph(opset, value.name, dims, nodes, parameters)


def read_checked(path: str | Path) -> tuple[onnx.ModelProto, CheckedGraph]:
    """Parse and check the file at `path` (see the module docstring)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as error:
        raise InputError(f"{path}: cannot read the ONNX file: {error.strerror}") from None
    if not 0 < size <= MAX_BYTES:
        raise InputError(f"{path.name}: {size:,} bytes; an ONNX file holds 1 to {MAX_BYTES:,}")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(path.read_bytes())
    except DecodeError as error:
        raise InputError(
            f"{path.name}: not a readable ONNX protobuf (truncated or another format): {error}"
        ) from None
    return model, check_model(model, size)


def checked_graph(path: str | Path) -> CheckedGraph:
    """`read_checked`'s metadata of the file at `path`, parsed once per file version (size and modification
    time): `POST /jobs` checks an upload and then reads its input shape for the admission checks, and a
    protobuf of up to 2 GiB should be parsed once, the parsed graph dropped (only the metadata is kept)."""
    stat = Path(path).stat()
    return _checked_metadata(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _checked_metadata(path: str, size: int, mtime_ns: int) -> CheckedGraph:
    return read_checked(path)[1]  # an InputError is raised, not cached
