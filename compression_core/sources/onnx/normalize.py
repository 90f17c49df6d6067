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
- a `Transpose` of a parameter not folded (the weight keeps its name); a flatten-to-1-D `Gather` of the
  exported batch of 1 (a lowered `as_strided`) made a per-sample gather;
- a BatchNormalization exported in training mode made the layer (its statistics outputs unused);
- a Conv's bias of zeros under an exporter's name (not a parameter's) removed;
- the graph's input and output batch dimension made symbolic (`batch`).

The result computes what the input computes on the exported batch size (the conversion checks it).
"""

from __future__ import annotations

import logging

import numpy as np
import onnx

__all__ = ["BATCH", "normalize"]

log = logging.getLogger(__name__)

BATCH = "batch"


def normalize(model: onnx.ModelProto) -> onnx.ModelProto:
    """The normalized copy of a checked `model` (see the module docstring)."""
    import onnx_ir as ir
    import onnx_ir.passes.common as common
    import onnxscript.optimizer as optimizer

    irm = ir.from_proto(model)
    common.InlinePass()(irm)
    common.ClearMetadataAndDocStringPass()(irm)
    common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(irm)
    optimizer.fold_constants(
        irm,
        onnx_shape_inference=False,
        input_size_limit=1 << 16,
        output_size_limit=1 << 22,
        should_fold=_keeps_parameters,
    )
    common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(irm)
    common.RemoveUnusedNodesPass()(irm)
    out = ir.to_proto(irm)
    _drop_zero_biases(out)
    _inference_batchnorms(out)
    batch = _batch_size(out)
    _fix_reshapes(out, batch)
    if batch == 1:
        _per_sample_gathers(out)
    if batch is not None:
        _symbolic_batch(out)
    return out


def _keeps_parameters(node: object) -> bool | None:
    """Not folded: a `Transpose` of a parameter (a `Linear` on a 3-D or 4-D input is exported as
    `MatMul(x, Transpose(weight))`): folded, the weight would become an unnamed constant, neither trained
    nor in `model.pth`."""
    inputs = getattr(node, "inputs", ())
    if getattr(node, "op_type", "") != "Transpose" or not inputs or inputs[0] is None:
        return None
    value = inputs[0]
    return False if value.is_initializer() and "." in (value.name or "") else None


def _per_sample_gathers(model: onnx.ModelProto) -> None:
    """`Gather(Reshape(x, [-1]), indices)` with constant indices whose first dimension is the exported
    batch of 1 (how the dynamo exporter lowers `as_strided`, e.g. in ConvNeXt's classifier): the same
    gather per sample, `Gather(Reshape(x, [0, -1]), indices[0], axis=1)`, so the graph runs on any batch."""
    from onnx import numpy_helper

    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    producers = {name: node for node in graph.node for name in node.output}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
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
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
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
