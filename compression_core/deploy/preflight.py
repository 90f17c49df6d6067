"""The preflight of a job (`mcs check`, `POST /jobs/validate`): in seconds, before anything is queued, what
the structured and int8 plans would do to this architecture and what they cannot do.

It builds the named architecture with random weights (the upload's values never matter for the plan: which
layers lose how many channels depends on the sparsities, not on the weights), compares the upload's tensor
names and shapes with it (read from the file's header where the format allows), traces the Torch-Pruning
groups, prunes a copy to check that the smaller model still runs, and, with `int8`, exports the smaller
model to ONNX and lists the weight layers onnxruntime's QDQ quantizer would quantize and those it leaves in
float. A refused layer is named with the reason; `ok` is false then.
"""

from __future__ import annotations

import copy
import logging
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from compression_core.errors import CompressionError, InputError, SpecError
from compression_core.spec import Spec

if TYPE_CHECKING:
    from compression_core.sources.base import ModelSource

__all__ = ["preflight", "upload_shapes"]

log = logging.getLogger(__name__)


def upload_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of an upload from its metadata alone, after the same checks the API makes
    (`compression_core.inspect_upload`: a stride-0 view or a lying header is refused, nothing is made
    dense); a sharded checkpoint (its index, or the folder holding it) from its shards' headers."""
    from compression_core.inspect_upload import inspect_state_dict
    from compression_core.streaming.source import INDEX_SUFFIX, open_source

    path = Path(path)
    if path.is_dir() or path.name.endswith(INDEX_SUFFIX):
        source = open_source(path)
        try:
            return {info.name: info.shape for info in source.infos}
        finally:
            source.close()
    return {tensor.name: tensor.shape for tensor in inspect_state_dict(path).tensors}


def fit_problems(model: torch.nn.Module, shapes: Mapping[str, tuple[int, ...]]) -> list[str]:
    """Why a state dict of these tensor shapes does not load into `model` (empty: it does)."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    problems = [f"missing tensor {k}" for k in expected if k not in shapes]
    problems += [f"unexpected tensor {k}" for k in shapes if k not in expected]
    problems += [
        f"{k}: the file has shape {shapes[k]}, the architecture {expected[k]}"
        for k in expected
        if k in shapes and tuple(shapes[k]) != expected[k]
    ]
    return problems


def preflight(
    spec: Spec, shapes: Mapping[str, tuple[int, ...]] | None = None, graph: Path | ModelSource | None = None
) -> dict[str, Any]:
    """The plan report; never raises for a plan problem (they are listed in `errors`), only for bad input.
    `graph`: an upload that carries its own graph (an ONNX file), whose source builds the module; the
    source itself when the caller has it open (`mcs check`), so that the graph is converted once."""
    from compression_core.channels import count_parameters
    from compression_core.deploy.stage import example_input
    from compression_core.models import build_model, meta_model

    started = time.perf_counter()
    report: dict[str, Any] = {"ok": True, "errors": []}
    if spec.model is None:
        report["model"] = None
        report["note"] = "data-free spec: no architecture to trace; rules are checked against the upload"
        report["seconds"] = time.perf_counter() - started
        return report
    errors: list[dict[str, str]] = report["errors"]
    if graph is not None:
        return _traced(spec, report, *_graph_module(spec, graph), started)
    probe = meta_model(spec.model)  # sized against the byte budget, nothing allocated
    if shapes is not None:
        misfit = fit_problems(probe, shapes)
        if misfit:  # found from the metadata: nothing is built or traced for a file that cannot load
            shown = misfit[:20] + ([f"... ({len(misfit)} in all)"] if len(misfit) > 20 else [])
            errors += [{"field": "model", "message": m} for m in shown]
            report["model"] = {
                "arch": spec.model.arch,
                "params": count_parameters(probe),
                "input_shape": spec.model.input_shape,
            }
            report["ok"] = False
            report["seconds"] = time.perf_counter() - started
            return report
    del probe
    torch.manual_seed(0)
    model = build_model(spec.model).eval()
    return _traced(spec, report, model, example_input(spec, None), started)


def _graph_module(spec: Spec, graph: Path | ModelSource) -> tuple[torch.nn.Module, torch.Tensor]:
    """The module and one input of an upload that carries its own graph, as its model source builds them."""
    from compression_core.sources import open_source

    if not isinstance(graph, Path):
        return _source_module(spec, graph)
    with open_source(graph, spec.model) as source:
        return _source_module(spec, source)


def _source_module(spec: Spec, source: ModelSource) -> tuple[torch.nn.Module, torch.Tensor]:
    from compression_core.deploy.stage import example_input

    model = source.module()
    if model is None:
        raise InputError(f"{source.kind}: this input has no module to trace")
    return model.eval(), example_input(spec, None, source)


def _traced(
    spec: Spec, report: dict[str, Any], model: torch.nn.Module, example: torch.Tensor, started: float
) -> dict[str, Any]:
    """The structured and int8 plans of `model`, traced on `example`, into `report`."""
    from compression_core.channels import count_parameters
    from compression_core.deploy.pruning import plan_structured, prune_structured
    from compression_core.deploy.stage import structured_targets

    assert spec.model is not None
    errors: list[dict[str, str]] = report["errors"]
    report["model"] = {
        "arch": spec.model.arch,
        "params": count_parameters(model),
        "input_shape": list(example.shape[1:]),
    }
    try:
        targets, ignore = structured_targets(model, model.state_dict(), spec)
    except SpecError as error:
        errors.append({"field": "spec.rules", "message": str(error)})
        targets, ignore = [], []
    small = model
    if targets:
        plan = plan_structured(model, example, targets, ignore)
        rule_of = {t.layer: t.rule for t in targets}
        for refused in plan.refused:
            errors.append(
                {
                    "field": f"spec.rules.{rule_of[refused.layer]}",
                    "message": f"layer {refused.layer!r}: {refused.reason}",
                }
            )
        structured: dict[str, Any] = plan.to_dict()
        if not plan.refused and not any(t.importance.value == "taylor" for t in targets):
            small = copy.deepcopy(model)
            try:
                _, done = prune_structured(small, example, targets, ignore=ignore)
                structured = done.to_dict()
                structured["params_after"] = count_parameters(small)
            except SpecError as error:
                errors.append({"field": "spec.rules", "message": str(error)})
                small = model
        elif not plan.refused:
            structured["note"] = "taylor importance needs the data's gradients; counts follow the sparsities"
        structured["params_before"] = count_parameters(model)
        report["structured"] = structured
    int8 = spec.method("int8")
    if int8 is not None:
        report["int8"] = _int8_plan(small, example, list(int8.exclude))
    report["export"] = [f.value for f in spec.export_formats]
    report["ok"] = not errors
    report["seconds"] = time.perf_counter() - started
    return report


def _int8_plan(model: torch.nn.Module, example: torch.Tensor, exclude: list[str]) -> dict[str, Any]:
    import fnmatch

    import onnx

    from compression_core.deploy.int8 import WEIGHT_OPS, module_name, quantizable_ops
    from compression_core.deploy.onnx_export import export_onnx

    supported = set(quantizable_ops())
    with tempfile.TemporaryDirectory(prefix="mcs-preflight-") as tmp:
        try:
            export_onnx(model, example, Path(tmp) / "model.onnx")
        except CompressionError as error:
            return {"error": str(error)}
        graph = onnx.load(str(Path(tmp) / "model.onnx")).graph
    quantized, floating = [], []
    float_ops: dict[str, int] = {}
    for node in graph.node:
        name = module_name(node.name)
        if node.op_type in WEIGHT_OPS:
            if any(fnmatch.fnmatchcase(name, p) for p in exclude):
                floating.append({"layer": name, "op": node.op_type, "reason": "excluded by int8.exclude"})
            elif node.op_type in supported:
                quantized.append(name)
            else:
                floating.append(
                    {"layer": name, "op": node.op_type, "reason": "onnxruntime has no int8 kernel"}
                )
        elif node.op_type not in supported:
            float_ops[node.op_type] = float_ops.get(node.op_type, 0) + 1
    return {
        "quantized": quantized,
        "float": floating,
        "float_ops": float_ops,  # operators without weights that compute in float between int8 layers
        "method": "onnxruntime QDQ static, weights int8 per channel, activations uint8",
    }
