"""A normalized ONNX graph -> a trainable `torch.fx.GraphModule` of standard layers (`nn.Conv2d`,
`nn.Linear`, `nn.BatchNorm2d`, `nn.LayerNorm`, ...) through onnx2torch, with its parameters named by the
graph's initializer names.

torch's dynamo exporter names each initializer after the PyTorch parameter it holds (`layer1.0.conv1.weight`),
so a layer whose initializers are `<path>.weight`, `<path>.bias` (and `<path>.running_mean`/`running_var`
for a BatchNorm) is placed at `<path>`, and a float initializer the graph uses directly (a ViT's
`class_token`) becomes an `nn.Parameter` at its own name: the module's `state_dict()` then has the keys of the
exporter's own model, and a shape-preserving job's `model.pth` loads strictly into the user's class
(`num_batches_tracked`, which ONNX does not carry, is added as PyTorch has it). A layer whose initializers
are not named so (a TorchScript export's `onnx::Conv_193`, a weight shared by two layers) is kept under
`onnx_ops.<node>` and listed in `Converted.unmapped`. Integer initializers (shape constants) and unnamed
float constants are non-persistent buffers under `onnx_constants`: part of the graph, not of the weights.

`Converted.bindings` maps every state-dict key that came from the graph to its initializer (and whether the
tensor is stored transposed, a `Gemm` with `transB=0`), so `write.py` can put the weights back.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

import onnx
import torch
from torch import fx, nn

from compression_core.errors import InputError
from compression_core.sources.onnx.normalize import named_by_model

__all__ = ["Binding", "Converted", "convert_graph"]

log = logging.getLogger(__name__)

_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$")  # RegNet names blocks `block1-0`
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_INT_TYPES = {onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.BOOL}


@dataclass(frozen=True)
class Binding:
    initializer: str  # the ONNX initializer's name
    transposed: bool = False  # the module holds the initializer transposed (Gemm with transB=0)


@dataclass
class Converted:
    module: fx.GraphModule
    bindings: dict[str, Binding] = field(default_factory=dict)  # state-dict key -> initializer
    unmapped: list[str] = field(default_factory=list)  # state-dict keys not named by an initializer


def _attrs(node: Any) -> dict[str, Any]:
    return dict(node.attributes)


def _layer_params(module: nn.Module, node: Any) -> dict[str, Binding] | None:
    """attribute -> initializer for the layers onnx2torch builds from initializers (None: another kind)."""
    inputs = list(node.input_values)
    if isinstance(module, _CONV):
        names = {"weight": inputs[1]} | ({"bias": inputs[2]} if len(inputs) > 2 and inputs[2] else {})
        return {k: Binding(v) for k, v in names.items()}
    if isinstance(module, nn.Linear) and node.operation_type == "Gemm":
        attrs = _attrs(node)
        if attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
            return None
        out = {"weight": Binding(inputs[1], transposed=not attrs.get("transB", 0))}
        if len(inputs) > 2 and inputs[2]:
            out["bias"] = Binding(inputs[2])
        return out
    if isinstance(module, _BN):
        keys = ("weight", "bias", "running_mean", "running_var")
        return {k: Binding(v) for k, v in zip(keys, inputs[1:5], strict=True)}
    if isinstance(module, nn.LayerNorm):
        names = {"weight": inputs[1]} | ({"bias": inputs[2]} if len(inputs) > 2 and inputs[2] else {})
        return {k: Binding(v) for k, v in names.items() if getattr(module, k, None) is not None}
    return None


def _prefix(params: dict[str, Binding]) -> str | None:
    """`<path>` when the layer's weight is the initializer `<path>.weight` (other attributes whose
    initializers are not `<path>.<attribute>` are listed as unmapped)."""
    weight = params.get("weight")
    if weight is None or weight.transposed or not weight.initializer.endswith(".weight"):
        return None
    prefix = weight.initializer.removesuffix(".weight")
    return prefix if _PATH.match(prefix) else None


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name) or "_"


class _Placer:
    """Places modules, parameters and buffers at dotted paths of a new module tree, refusing clashes."""

    def __init__(self) -> None:
        self.root = nn.Module()
        self.taken: set[str] = set()  # leaf paths (modules, parameters, buffers)
        self.containers: set[str] = set()

    def free(self, path: str) -> bool:
        parts = path.split(".")
        parents = [".".join(parts[:i]) for i in range(1, len(parts))]
        return (
            path not in self.taken
            and path not in self.containers
            and not any(p in self.taken for p in parents)
        )

    def _owner(self, path: str) -> tuple[nn.Module, str]:
        *parents, leaf = path.split(".")
        owner = self.root
        for i, part in enumerate(parents):
            self.containers.add(".".join(parents[: i + 1]))
            child = getattr(owner, part, None)
            if child is None:
                child = nn.Module()
                owner.add_module(part, child)
            owner = child
        self.taken.add(path)
        return owner, leaf

    def module(self, path: str, module: nn.Module) -> None:
        owner, leaf = self._owner(path)
        owner.add_module(leaf, module)

    def parameter(self, path: str, tensor: torch.Tensor) -> None:
        owner, leaf = self._owner(path)
        owner.register_parameter(leaf, nn.Parameter(tensor.detach().clone()))

    def buffer(self, path: str, tensor: torch.Tensor) -> None:
        owner, leaf = self._owner(path)
        owner.register_buffer(leaf, tensor.detach().clone())

    def constant(self, path: str, tensor: torch.Tensor) -> None:
        owner, leaf = self._owner(path)
        owner.register_buffer(leaf, tensor.detach().clone(), persistent=False)


def convert_graph(model: onnx.ModelProto) -> Converted:
    """The module of a normalized, checked graph (see the module docstring). InputError when onnx2torch
    cannot convert a node (named)."""
    from onnx2torch import convert
    from onnx2torch.onnx_graph import OnnxGraph

    from compression_core.sources.onnx.converters import install

    install()
    try:
        gm = convert(model, attach_onnx_mapping=True)
    except (NotImplementedError, KeyError, ValueError, RuntimeError, TypeError) as error:
        raise InputError(f"the ONNX graph could not be converted to PyTorch: {error}") from None
    nodes = OnnxGraph(model.graph).nodes
    order = {t.name: i for i, t in enumerate(model.graph.initializer)}
    dtypes = {t.name: t.data_type for t in model.graph.initializer}
    graph = gm.graph
    calls = [n for n in graph.nodes if n.op == "call_module"]

    # which initializer each get_attr reads: from the modules' ONNX mappings, in argument order
    attr_source: dict[str, str] = {}
    for call in calls:
        mapping = getattr(gm.get_submodule(str(call.target)), "onnx_mapping", None)
        if mapping is None:
            continue
        names = [n for n in mapping.inputs if n]
        values = [*call.args, *call.kwargs.values()]
        for onnx_name, value in zip(names, values, strict=False):
            if isinstance(value, fx.Node) and value.op == "get_attr":
                attr_source[str(value.target)] = onnx_name

    # the layers: at the path their initializers name, in the graph's initializer order
    layers: list[tuple[int, fx.Node, nn.Module, dict[str, Binding], str | None]] = []
    for call in calls:
        module = gm.get_submodule(str(call.target))
        if hasattr(module, "onnx_mapping"):
            del module.onnx_mapping
        params = _layer_params(module, nodes[str(call.target)]) if str(call.target) in nodes else None
        prefix = _prefix(params) if params else None
        first = min((order.get(b.initializer, 1 << 30) for b in (params or {}).values()), default=1 << 30)
        layers.append((first, call, module, params or {}, prefix))
    counts: dict[str, int] = {}
    for _, _, _, params, _ in layers:  # an initializer shared by two layers names neither
        for binding in params.values():
            counts[binding.initializer] = counts.get(binding.initializer, 0) + 1
    placer = _Placer()
    bindings: dict[str, Binding] = {}
    unmapped: list[str] = []
    placed: dict[str, str] = {}
    for _, call, module, params, prefix in sorted(layers, key=lambda item: item[0]):
        shared = any(counts[b.initializer] > 1 for b in params.values())
        path = prefix if prefix is not None and not shared and placer.free(prefix) else None
        if path is None:
            path = f"onnx_ops.{_safe(str(call.target))}"
        unmapped += [f"{path}.{a}" for a, b in params.items() if b.initializer != f"{path}.{a}"]
        placer.module(path, module)
        placed[str(call.target)] = path
        for attr, binding in params.items():
            bindings[f"{path}.{attr}"] = binding

    # initializers the graph reads directly: named floats become parameters, the rest constants
    constants: dict[str, str] = {}
    for get in [n for n in graph.nodes if n.op == "get_attr"]:
        onnx_name = attr_source.get(str(get.target))
        tensor = gm.get_buffer(str(get.target))
        key = onnx_name if onnx_name is not None else str(get.target)
        if key in constants:
            get.target = constants[key]
            continue
        floating = (
            onnx_name is not None and dtypes.get(onnx_name) not in _INT_TYPES and tensor.is_floating_point()
        )
        named = (
            onnx_name is not None
            and named_by_model(onnx_name)  # a ViT's `class_token`, not a lifted constant
            and bool(_PATH.match(onnx_name))
            and placer.free(onnx_name)
        )
        if named and floating and onnx_name is not None:
            placer.parameter(onnx_name, tensor)
            bindings[onnx_name] = Binding(onnx_name)
            constants[key] = onnx_name
        elif named and onnx_name is not None:  # an integer buffer (a Swin's relative_position_index)
            placer.buffer(onnx_name, tensor)
            constants[key] = onnx_name
        else:
            path = f"onnx_constants.c{len(constants)}_{_safe(key)[:40]}"
            placer.constant(path, tensor)
            constants[key] = path
        get.target = constants[key]
    for call in calls:
        call.target = placed[str(call.target)]
    out = fx.GraphModule(placer.root, graph, class_name="OnnxModel")
    layers_bound = {path.rsplit(".", 1)[0] for path in bindings}
    for name, value in list(placer.root.named_buffers()):  # GraphModule copies buffers as persistent
        owner, leaf = name.rsplit(".", 1) if "." in name else ("", name)
        # a constant, or an operator's own (a ConstantOfShape's `value`): not the model's weights
        if name.startswith("onnx_constants.") or (
            owner.startswith("onnx_ops.") and owner not in layers_bound
        ):
            sub = out.get_submodule(owner)
            sub._buffers.pop(leaf, None)
            sub.register_buffer(leaf, value, persistent=False)
    out.recompile()
    return Converted(out, bindings, unmapped)
