"""Normalize a checked ONNX graph before conversion, so that what exporters write differently reaches the
converter in one form:

- local functions inlined, the exporter's per-node metadata and doc strings dropped (stack traces of the
  exporting machine), constants folded (the onnxscript optimizer's constant folding, without its
  fusion rewrites, so BatchNormalization stays a layer of its own), `Constant` nodes lifted into
  initializers and unused nodes removed: the TorchScript exporter's `Constant` biases and the dynamo
  exporter's `Shape -> Concat` chains become initializers;
- `Reshape` with a constant target: `allowzero=1` dropped when the target has no zero (then it means the
  same); the exported batch size in the target's first place becomes -1 (or 0, "copy the input's", when
  another place has the -1), and a two-dimensional target (a flatten) becomes `[0, -1]`, so the graph runs
  on any batch and the flatten follows the widths structured pruning leaves;
- a node that reads a parameter not folded (a `Transpose` of a weight, an `Expand` of a class token: the
  parameter keeps its name); a flatten-to-1-D `Gather` of the
  exported batch of 1 (a lowered `as_strided`) made a per-sample gather; an `Expand` of a parameter to
  the exported batch of 1 before a `Concat` (a ViT's class token) made to follow the input's batch;
- a BatchNormalization exported in training mode made the layer (its statistics outputs unused);
- a Conv's bias of zeros under an exporter's name (not a parameter's) removed; a `Clip` with an upper
  bound alone given a lower bound of -inf;
- the graph's input and output batch dimension made symbolic (`batch`), and a `Reshape` target with the
  batch of 1 in an inner place (sequence-first attention) made to copy the input's batch, and one whose
  first entry is the batch of 1 merged with the places after it (a Swin window partition) made -1.

The result computes what the input computes on the exported batch size (the conversion checks it).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx

__all__ = ["BATCH", "named_by_model", "normalize"]

log = logging.getLogger(__name__)

BATCH = "batch"
_PROBE = 7919  # a batch size for shape inference that no other dimension is likely to have


def normalize(model: onnx.ModelProto) -> onnx.ModelProto:
    """The normalized copy of a checked `model` (see the module docstring)."""
    import onnx_ir as ir
    import onnx_ir.passes.common as common
    import onnxscript.optimizer as optimizer

    parameters = _parameters(model)
    irm = ir.from_proto(model)
    common.InlinePass()(irm)
    common.ClearMetadataAndDocStringPass()(irm)
    common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(irm)
    optimizer.fold_constants(
        irm,
        onnx_shape_inference=False,
        input_size_limit=1 << 16,
        output_size_limit=1 << 22,
        should_fold=_keeps_parameters(parameters),
    )
    common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(irm)
    common.RemoveUnusedNodesPass()(irm)
    out = ir.to_proto(irm)
    _drop_zero_biases(out)
    _inference_batchnorms(out)
    _clip_lower_bounds(out)
    batch = _batch_size(out)
    _fix_reshapes(out, batch)
    if batch == 1:
        _per_sample_gathers(out)
        _batch_expands(out)
    if batch is not None:
        _symbolic_batch(out)
    if batch == 1:
        _inner_batch_reshapes(out)
    _layer_norm_shapes(out)
    return out


def _layer_norm_shapes(model: onnx.ModelProto) -> None:
    """A `LayerNormalization` whose input shape inference loses (after a Swin V2's rolled windows): the
    normalized places' sizes, which its scale has, written as the input's value info, where the converter
    reads the layer's `normalized_shape`."""
    from onnx import helper

    try:
        inferred = onnx.shape_inference.infer_shapes(_weightless(model))
    except Exception:  # noqa: BLE001 - an optional improvement; the conversion check still runs
        return
    shapes = {v.name: v.type.tensor_type for v in [*inferred.graph.value_info, *inferred.graph.input]}
    initializers = {t.name: t for t in model.graph.initializer}
    written = {v.name for v in model.graph.value_info}
    for node in model.graph.node:
        if node.op_type != "LayerNormalization" or len(node.input) < 2 or node.input[1] not in initializers:
            continue
        known = shapes.get(node.input[0])
        if known is None or not known.HasField("shape") or node.input[0] in written:
            continue
        dims = known.shape.dim
        scale = list(initializers[node.input[1]].dims)
        if not scale or len(dims) < len(scale):
            continue
        tail = dims[len(dims) - len(scale) :]
        if all(d.HasField("dim_value") for d in tail):
            continue
        sizes: list[int | str] = [
            d.dim_value if d.HasField("dim_value") else f"{node.input[0]}_{i}" for i, d in enumerate(dims)
        ]
        sizes[len(dims) - len(scale) :] = scale
        model.graph.value_info.append(helper.make_tensor_value_info(node.input[0], known.elem_type, sizes))
        written.add(node.input[0])


_KEPT_FLOAT_ELEMENTS = 64  # a float initializer this small may be read for a shape (a Resize's scales)


def _weightless(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` for shape inference without the weights' data: each float initializer larger
    than `_KEPT_FLOAT_ELEMENTS` becomes a graph input of its type and shape (what inference reads of it);
    integer ones (shape targets, indices) and small floats stay. Normalization infers shapes up to nine
    times; copying a model with its weights each time cost the memory and time of nine models."""
    from onnx import helper

    probe = onnx.ModelProto()
    probe.ir_version = model.ir_version
    probe.opset_import.extend(model.opset_import)
    probe.functions.extend(model.functions)
    graph = probe.graph
    graph.name = model.graph.name
    graph.node.extend(model.graph.node)
    graph.input.extend(model.graph.input)
    graph.output.extend(model.graph.output)
    graph.value_info.extend(model.graph.value_info)
    floats = (
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.FLOAT16,
        onnx.TensorProto.BFLOAT16,
        onnx.TensorProto.DOUBLE,
    )
    declared = {value.name for value in model.graph.input}
    for tensor in model.graph.initializer:
        if tensor.data_type in floats and int(np.prod(tensor.dims)) > _KEPT_FLOAT_ELEMENTS:
            if tensor.name not in declared:
                graph.input.append(
                    helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims))
                )
        else:
            graph.initializer.append(tensor)
    return probe


def _inner_batch_reshapes(model: onnx.ModelProto, rounds: int = 8) -> None:
    """Constant `Reshape` targets and `Expand` shapes that still hold the exported batch of 1: in an inner
    place (a ViT's sequence-first attention: `[5, 1, 3, 768]`; `[5, 12, 64]`, batch times heads; `[5, 768]`,
    sequence times batch), merged into the first place (a Swin's windows: `[64, 49, 96]`), or an `Expand`
    to a shape holding it (`_expand_follows_batch`). Shape inference on a probe batch says where the batch
    is; the place that holds it becomes 0 ("copy the input's") when it is the batch alone, else -1 ("what
    is left"), 1 in an `Expand`. Repeated while it changes something (each fix lets the batch flow
    further)."""
    from onnx import numpy_helper

    for _ in range(rounds):
        probe = _weightless(model)
        for value in probe.graph.input:  # a batch no other dimension has: where it goes is the batch
            dims = value.type.tensor_type.shape.dim
            if dims and dims[0].dim_param == BATCH:
                dims[0].dim_value = _PROBE
        try:
            inferred = onnx.shape_inference.infer_shapes(probe)
        except Exception:  # noqa: BLE001 - an optional improvement; the conversion check still runs
            return
        values = [*inferred.graph.value_info, *inferred.graph.input]
        shapes = {v.name: v.type.tensor_type.shape.dim for v in values}
        initializers = {t.name: t for t in model.graph.initializer}
        changed = False
        for node in model.graph.node:
            if node.op_type not in ("Reshape", "Expand") or len(node.input) < 2:
                continue
            if node.input[1] not in initializers:
                continue
            dims = shapes.get(node.input[0])
            target = numpy_helper.to_array(initializers[node.input[1]]).astype(np.int64).copy()
            if not dims or target.ndim != 1:
                continue
            sizes = [int(d.dim_value) if d.HasField("dim_value") else None for d in dims]
            if node.op_type == "Expand":
                _expand_follows_batch(target, sizes)
            elif _PROBE in sizes[1:]:
                _place_batch(target, sizes)
            elif sizes[0] in (_PROBE, None):
                _merge_batch_first(target, sizes)
            else:
                _split_batch(target, sizes)
            if np.array_equal(target, numpy_helper.to_array(initializers[node.input[1]])):
                continue
            name = f"{node.input[1]}__{node.name or node.output[0]}"
            model.graph.initializer.append(numpy_helper.from_array(target, name))
            node.input[1] = name
            changed = True
        if not changed:
            return


def _place_batch(target: np.ndarray, sizes: list[int | None]) -> None:
    """Where the batch is in the input (`sizes`), the target place that holds it: 0 or -1 (in place)."""
    at = sizes.index(_PROBE, 1)  # where the batch is, in the input
    # the batch's own place, unless it is the last (features stay whole), else an earlier place
    # that it is merged into (sequence times batch); the first that fits
    places = ([at] if at < len(target) - 1 else []) + list(range(min(at, len(target)) - 1, -1, -1))
    for i in places:
        prefix = all(t in (0, b) for t, b in zip(target[:i], sizes[:i], strict=False))
        if not prefix or target[i] in (0, -1):
            continue
        if i == at and target[i] == 1:
            target[i] = 0  # the batch itself
        elif -1 not in target and (i == at or _product(sizes[i:at]) == target[i]):
            target[i] = -1  # the batch merged with its neighbours (`[5, 12, 64]`, `[5, 768]`)
        break


# names an exporter makes up (`val_12`, `onnx::Conv_5`, a constant torch.export lifted out of `forward`:
# `features.1.1.attn.lifted_tensor_0`), and those normalize derives from them (`val_12__node_view`), not the
# exporting model's parameter or buffer names
_EXPORTER_NAME = re.compile(
    r"^(val_\d+|onnx::.*|_val_\d+|initializers_.*)(__.*)?$"
    r"|(^|\.)(lifted_tensor_\d+|_tensor_constant\d+|scalar_tensor_default(_\d+)?)$"
    # a constant the exporter folded, named after the creating op's node (a Swin V2's `zeros_like_3`)
    r"|^((zeros|ones|full|empty)(_like)?|arange|eye|linspace|scalar_tensor|new_zeros|new_ones)(_\d+)?$"
)


def named_by_model(name: str) -> bool:
    """Whether an initializer's name is the exporting model's own (a parameter or buffer path)."""
    return not _EXPORTER_NAME.search(name)


def _parameters(model: onnx.ModelProto) -> set[str]:
    """The initializers named as the exporting model's parameters and buffers (a Swin's integer
    `relative_position_index` too: folded, it would leave `model.pth`), not the exporter's `val_12`."""
    return {t.name for t in model.graph.initializer if named_by_model(t.name)}


def _keeps_parameters(parameters: set[str]) -> Callable[[Any], bool | None]:
    """Nodes that read a parameter are not folded (a `Linear` on a 3-D or 4-D input is exported as
    `MatMul(x, Transpose(weight))`, a ViT's class token as `Expand(class_token, ...)`): folded, the parameter
    would become an unnamed constant, neither trained nor in `model.pth`."""

    def should_fold(node: Any) -> bool | None:
        names = [value.name for value in node.inputs if value is not None]
        return False if any(name in parameters for name in names) else None

    return should_fold


def _per_sample_gathers(model: onnx.ModelProto) -> None:
    """`Gather(Reshape(x, [-1]), indices)` with constant indices whose first dimension is the exported
    batch of 1 (how the dynamo exporter lowers `as_strided`, e.g. in ConvNeXt's classifier): the same
    gather per sample, `Gather(Reshape(x, [0, -1]), indices[0], axis=1)`, so the graph runs on any batch."""
    from onnx import numpy_helper

    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    producers = {name: node for node in graph.node for name in node.output}
    uses = _use_counts(graph)
    for node in graph.node:
        if node.op_type != "Gather" or len(node.input) != 2 or node.input[1] not in initializers:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        flat = producers.get(node.input[0])
        if axis != 0 or flat is None or flat.op_type != "Reshape" or uses.get(flat.output[0], 0) != 1:
            continue
        target = initializers.get(flat.input[1])
        indices = numpy_helper.to_array(initializers[node.input[1]])
        if target is None or numpy_helper.to_array(target).tolist() != [-1]:
            continue
        if indices.ndim < 2 or indices.shape[0] != 1 or uses.get(node.input[1], 0) != 1:
            continue
        shape = numpy_helper.from_array(np.array([0, -1], dtype=np.int64), f"{flat.input[1]}__per_sample")
        graph.initializer.append(shape)
        if uses.get(flat.input[1], 0) == 1:
            graph.initializer.remove(target)
        flat.input[1] = shape.name
        initializers[node.input[1]].CopyFrom(numpy_helper.from_array(indices[0], node.input[1]))
        for attribute in [a for a in node.attribute if a.name == "axis"]:
            node.attribute.remove(attribute)
        node.attribute.append(onnx.helper.make_attribute("axis", 1))
        log.info("normalize: the gather %s runs per sample", node.name or node.output[0])


def _batch_expands(model: onnx.ModelProto) -> None:
    """`Expand(parameter, [1, ...])` into a `Concat` (a ViT's `class_token.expand(n, -1, -1)` exported on a
    batch of 1): the target's first entry becomes the input's batch size (`Shape(input)[0:1]`)."""
    from onnx import helper, numpy_helper

    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    inputs = [v.name for v in graph.input if v.name not in initializers]
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    batch_shape = ""
    added = 0  # nodes inserted before the ones still to visit
    for position, node in enumerate(list(graph.node)):
        if node.op_type != "Expand" or len(node.input) != 2 or len(inputs) != 1:
            continue
        data, target = initializers.get(node.input[0]), initializers.get(node.input[1])
        if data is None or target is None or not data.dims or data.dims[0] != 1:
            continue
        shape = numpy_helper.to_array(target).astype(np.int64)
        if shape.ndim != 1 or len(shape) < 2 or shape[0] != 1:
            continue
        if not any(c.op_type == "Concat" for c in consumers.get(node.output[0], [])):
            continue
        if not batch_shape:
            batch_shape = f"{inputs[0]}__batch"
            graph.node.insert(0, helper.make_node("Shape", [inputs[0]], [batch_shape], start=0, end=1))
            added += 1
        rest = numpy_helper.from_array(shape[1:], f"{target.name}__rest__{node.output[0]}")
        graph.initializer.append(rest)
        full = f"{target.name}__batch__{node.output[0]}"
        graph.node.insert(
            position + added, helper.make_node("Concat", [batch_shape, rest.name], [full], axis=0)
        )
        added += 1
        node.input[1] = full
        log.info("normalize: the expand %s follows the batch", node.name or node.output[0])


def _expand_follows_batch(target: np.ndarray, sizes: list[int | None]) -> None:
    """An `Expand` to a constant shape that carries the exported batch of 1 merged into a place
    (`F.normalize`'s `expand_as` in a Swin V2's windows: `[49, 3, 64, 1]` to `[49, 3, 64, 32]`): where the
    input's place holds the batch (a multiple of the probe, or unknown once inference lost it), the target
    becomes 1, "keep the input's", which at the exported batch means the same (in place)."""
    offset = len(target) - len(sizes)
    if offset < 0:
        return
    for i, size in enumerate(sizes):
        wanted = int(target[offset + i])
        if wanted <= 1:
            continue
        if size is None or (size % _PROBE == 0 and size // _PROBE == wanted):
            target[offset + i] = 1


def _merge_batch_first(target: np.ndarray, sizes: list[int | None]) -> None:
    """The batch merged with the places after it (a Swin window partition, `[B, 8, 8, 7, 7, 96]` to
    `[64, 49, 96]` exported with B = 1): the target's first entry, the product of the input's first place
    and the places it absorbs, becomes -1 (in place). The input's first place is the probe batch (then it
    was 1 when exported) or unknown (shape inference lost the batch, as after a Swin's shifted windows; then
    its exported size is what the element counts leave). At the exported size the -1 means the same."""
    if -1 in target or 0 in target or len(target) < 2 or target[0] <= 1:
        return
    rest, total = _product(sizes[1:]), _product([int(t) for t in target])
    if not rest or not total or total % rest:
        return
    first = 1 if sizes[0] == _PROBE else total // rest  # the input's first place when exported
    if sizes[0] == _PROBE and total != rest:
        return  # not the same elements without the batch: some other reshape
    for k in range(1, len(sizes) + 1):
        merged = _product([first, *sizes[1:k]])
        if merged == target[0]:
            target[0] = -1
            return
        if merged is None or merged > target[0]:
            return


def _split_batch(target: np.ndarray, sizes: list[int | None]) -> None:
    """The batch merged into an input place (`5 * batch`) and split out again (`[5, 1, 768]`): the 1
    after the places that make up the rest of that merged size becomes -1, or the place itself when the
    target keeps it whole (in place)."""
    merged = [i for i, n in enumerate(sizes) if n and n > _PROBE and n % _PROBE == 0]
    if not merged or -1 in target:
        return
    at, factor = merged[0], (sizes[merged[0]] or 0) // _PROBE
    if not all(t in (0, b) for t, b in zip(target[:at], sizes[:at], strict=False)):
        return
    for j in range(at, len(target)):
        if _product([int(t) for t in target[at:j]]) == factor and target[j] == 1:
            target[j] = -1
            return
    rest = _product(sizes[at + 1 :])
    if at < len(target) and target[at] == factor and rest == _product([int(t) for t in target[at + 1 :]]):
        target[at] = -1  # the merged place kept whole (`[64 * batch, 49, 288]` to `[64, 49, 3, 3, 32]`)


def _use_counts(graph: onnx.GraphProto) -> dict[str, int]:
    """How many node inputs read each value (an initializer shared by two nodes is rewritten per node)."""
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    return uses


def _product(sizes: list[int | None]) -> int | None:
    out = 1
    for size in sizes:
        if size is None:
            return None
        out *= size
    return out


def _clip_lower_bounds(model: onnx.ModelProto) -> None:
    """`Clip(x, "", max)`, an upper bound alone (`torch.clamp(logit_scale, max=...)`, a Swin V2's): the
    empty lower bound becomes -inf of the bound's type, which means the same and which the converter reads
    as a constant (it reads the empty name as a computed value and refuses it)."""
    from onnx import numpy_helper

    initializers = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if (
            node.op_type != "Clip"
            or len(node.input) < 3
            or node.input[1]
            or node.input[2] not in initializers
        ):
            continue
        upper = numpy_helper.to_array(initializers[node.input[2]])
        name = f"{node.input[2]}__no_lower_bound"
        if name not in initializers:
            initializers[name] = numpy_helper.from_array(np.array(-np.inf, dtype=upper.dtype), name)
            model.graph.initializer.append(initializers[name])
        node.input[1] = name


def _drop_zero_biases(model: onnx.ModelProto) -> None:
    """A Conv bias of zeros that no PyTorch parameter names (the dynamo exporter's `val_5` for a
    `bias=False` convolution): removed, so the layer has no bias, as in the exporting model."""
    from onnx import numpy_helper

    initializers = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 3 or node.input[2] not in initializers:
            continue
        name = node.input[2]
        if "." in name or numpy_helper.to_array(initializers[name]).any():
            continue
        del node.input[2]
    used = {name for node in model.graph.node for name in node.input} | {v.name for v in model.graph.output}
    kept = [t for t in model.graph.initializer if t.name in used]
    if len(kept) != len(model.graph.initializer):
        del model.graph.initializer[:]
        model.graph.initializer.extend(kept)


def _inference_batchnorms(model: onnx.ModelProto) -> None:
    """A BatchNormalization exported in training mode (`training_mode=1`, the running statistics as extra
    outputs that nothing reads): the layer itself, which `nn.BatchNorm2d` is in either mode."""
    graph_outputs = {v.name for v in model.graph.output}
    used = {name for node in model.graph.node for name in node.input} | graph_outputs
    for node in model.graph.node:
        if node.op_type != "BatchNormalization" or len(node.output) <= 1:
            continue
        if any(name and name in used for name in node.output[1:]):
            continue
        del node.output[1:]
        for attribute in [a for a in node.attribute if a.name == "training_mode"]:
            node.attribute.remove(attribute)


def _batch_size(model: onnx.ModelProto) -> int | None:
    """The static batch size the graph was exported with (None when already symbolic)."""
    initializers = {t.name for t in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    dims = [v.type.tensor_type.shape.dim for v in inputs]
    if not dims or not all(d and d[0].HasField("dim_value") for d in dims):
        return None
    return int(dims[0][0].dim_value)


def _fix_reshapes(model: onnx.ModelProto, batch: int | None) -> None:
    from onnx import numpy_helper

    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    uses = _use_counts(graph)
    for node in graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] not in initializers:
            continue
        tensor = initializers[node.input[1]]
        target = numpy_helper.to_array(tensor).astype(np.int64).copy()
        allowzero = next((a for a in node.attribute if a.name == "allowzero"), None)
        if allowzero is not None and allowzero.i == 1:
            if (target == 0).any():
                continue  # literal zeros: keep the node as it is
            node.attribute.remove(allowzero)
        changed = target.copy()
        if batch is not None and changed.ndim == 1 and len(changed) >= 2 and changed[0] == batch:
            if len(changed) == 2 and changed[1] > 0:
                changed[:] = (0, -1)  # a flatten: the features follow the widths
            elif -1 in changed[1:]:
                changed[0] = 0
            else:
                changed[0] = -1
        if np.array_equal(changed, target):
            continue
        new = numpy_helper.from_array(changed, name=tensor.name)
        if uses.get(tensor.name, 0) > 1:  # shared: give this node its own copy
            new.name = f"{tensor.name}__{node.name or node.output[0]}"
            node.input[1] = new.name
            graph.initializer.append(new)
        else:
            tensor.CopyFrom(new)


def _symbolic_batch(model: onnx.ModelProto) -> None:
    initializers = {t.name for t in model.graph.initializer}
    for value in [*model.graph.input, *model.graph.output]:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = BATCH
    del model.graph.value_info[:]  # intermediate shapes named the old batch size
