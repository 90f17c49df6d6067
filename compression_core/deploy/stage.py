"""The deployment stage of a job whose spec names a `model` (issue 12), in two calls from the pipeline:

- `DeployStage.start(job)` before any compression or retraining: the uploaded model's accuracy, then the
  physical structured pruning of the `structured` rules (Torch-Pruning), so retraining and the data-free
  steps work on the smaller model; `compress` wraps the pipeline's compress function so that the tensors
  already pruned are not pruned again (a `[structured, quantize]` rule still quantizes them).
- `finish(out_dir)` after `model.pth` is written: `architecture.json`, evaluation.after of
  `load_model(out_dir)` (what the user deploys), `model.onnx` checked in onnxruntime against it,
  `model.int8.onnx` with `int8`, and the `deployment` table of metrics.json.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from compression_core.budget import check_bytes
from compression_core.channels import count_parameters
from compression_core.deploy.architecture import ARCHITECTURE_FILE, architecture_record, load_model
from compression_core.deploy.pruning import PruneTarget, StructuredPlan, prune_structured
from compression_core.deploy.spec import ExportFormat, Importance
from compression_core.deploy.table import MeasureOptions, deployment_table, onnx_candidate, torch_candidate
from compression_core.errors import CompressionError, SpecError
from compression_core.io import atomic_write_bytes
from compression_core.methods.apply import dense_record
from compression_core.metrics import summarize, tensor_metrics, upload_totals
from compression_core.models.inputs import known_input_shape
from compression_core.records import TensorRecord
from compression_core.select import select_tensors
from compression_core.sources import ModelSource
from compression_core.spec.base import DefaultDtype
from compression_core.spec.model import RuleBase as Rule
from compression_core.spec.model import SpecBase as Spec

__all__ = ["DeployStage", "example_input", "structured_targets"]

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, float, str], None]
TAYLOR_SAMPLES = 256  # training samples whose gradients rank channels for taylor importance
CHECK_SAMPLES = 8  # random inputs the ONNX files are checked on
ONNX_RTOL = 1e-4


def example_input(spec: Spec, data: Any = None, source: ModelSource | None = None) -> torch.Tensor:
    """One input sample (batch of 1): the spec's input_shape, else the data's, else the one the model
    source knows (an architecture's name, a graph's declared input)."""
    if spec.model is not None and spec.model.input_shape:
        given = spec.model.input_shape
        check_bytes(f"model.input_shape {given} (float32)", 4 * math.prod(given), error=SpecError)
        return torch.zeros(1, *given)
    if data is not None:
        return data.train.tensors[0][:1].float()
    if source is not None:
        shape = source.input_signature()
    elif spec.model is not None:  # no upload at hand (the preflight): what the architecture's name tells
        shape = known_input_shape(spec.model.arch, dict(spec.model.kwargs))
    else:
        shape = None
    if shape is not None:
        return torch.zeros(1, *shape)
    arch = spec.model.arch if spec.model is not None else (source.kind if source else "the model")
    raise SpecError(
        f"model.input_shape: cannot tell the input of {arch!r}; give one sample's shape, e.g. [3, 224, 224]"
    )


def structured_targets(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], spec: Spec
) -> tuple[list[PruneTarget], list[str]]:
    """(layers the structured rules select, with their sparsity and options; the union of `ignore`)."""
    modules = dict(model.named_modules())
    targets, ignore = [], []
    for name, sel in select_tensors(state_dict, spec).items():
        step: Any = sel.rule.step("structured")  # methods/structured/spec.py's StructuredStep
        if step is None:
            continue
        layer = name.removesuffix(".weight")
        if not name.endswith(".weight") or layer not in modules:
            raise SpecError(f"{sel.label}: {name!r} is not a layer's weight; structured rules select weights")
        targets.append(
            PruneTarget(
                layer,
                step.sparsity,
                sel.index,
                step.scope,
                step.importance or Importance(step.norm.value),
                step.round_to,
            )
        )
        ignore += [p for p in step.ignore if p not in ignore]
    return targets, ignore


def _without_structured(rule: Rule) -> Rule | None:
    steps = [s for s in rule.steps if s.type != "structured"]
    return rule.model_copy(update={"steps": steps}) if steps else None


class DeployStage:
    """One job's deployment stage (see the module docstring)."""

    def __init__(self, job: Any, original_spec: Spec):
        self.job = job
        self.spec = original_spec
        self.example = example_input(original_spec, job.data, job.source)
        self.history: list[tuple[str, bool, list[int]]] = []
        self.plan = StructuredPlan([], [])
        self.params_before = count_parameters(job.model)
        self.before: dict[str, Any] | None = None
        # the uploaded model's size, set when structured pruning changes the shapes: ratios compare with it
        self.upload: dict[str, int] | None = None
        self.deployed: nn.Module | None = None  # load_model(out_dir), once `finish` wrote the files

    @classmethod
    def start(cls, job: Any, progress: ProgressFn | None = None) -> DeployStage:
        """Evaluate the upload, then prune `job.model` physically; `job.original` becomes its state dict."""
        stage = cls(job, job.spec)
        targets, ignore = structured_targets(job.model, job.original, job.spec)
        if not targets:
            return stage
        if progress:
            progress("structured", 0.05, f"Torch-Pruning {len(targets)} layers")
        job.evaluate_before()
        stage.before = job.evaluation.get("before")
        stage.upload = upload_totals(job.original)
        batches = None
        if any(t.importance is Importance.taylor for t in targets):
            x, y = job.data.train.tensors
            batches = list(zip(x[:TAYLOR_SAMPLES].split(64), y[:TAYLOR_SAMPLES].split(64), strict=True))
        stage.history, stage.plan = prune_structured(
            job.model, stage.example, targets, ignore=ignore, gradient_batches=batches
        )
        job.original = {k: v.detach().cpu().clone() for k, v in job.model.state_dict().items()}
        log.info("structured: %d -> %d parameters", stage.params_before, count_parameters(job.model))
        return stage

    # --- compression of the pruned tensors ------------------------------------------------------------

    def wrap(
        self, compress: Callable[..., tuple[list[TensorRecord], dict[str, Any]]]
    ) -> Callable[..., tuple[list[TensorRecord], dict[str, Any]]]:
        """`compress` with the structured steps taken out: their channels are gone already."""
        if not self.history:
            return compress

        def without_structured(
            state: Mapping[str, torch.Tensor], spec: Spec, **kwargs: Any
        ) -> tuple[list[TensorRecord], dict[str, Any]]:
            selections = select_tensors(state, spec)
            rules = [_without_structured(r) for r in spec.rules]
            dense = {n for n, s in selections.items() if rules[s.index] is None}
            rest = {n: t for n, t in state.items() if n not in dense}
            derived = spec.model_copy(update={"rules": [r for r in rules if r is not None]})
            records, metrics = compress(rest, derived, **kwargs)
            by_name = {r.name: r for r in records}
            float16 = spec.default.dtype is DefaultDtype.float16
            merged, entries = [], []
            for name, tensor in state.items():
                record = dense_record(name, tensor, float16=float16) if name in dense else by_name[name]
                if name in dense:
                    record.method = "structured (physical)"
                sel = selections.get(name)
                merged.append(record)
                entries.append(tensor_metrics(name, tensor, record, sel.label if sel else None))
            metrics["tensors"] = entries
            metrics["totals"] = summarize(entries, upload=self.upload)
            return merged, metrics

        return without_structured

    # --- after model.pth is written ---------------------------------------------------------------------

    def finish(self, out_dir: Path, metrics: dict[str, Any], *, progress: ProgressFn | None = None) -> None:
        spec, job = self.spec, self.job
        out_dir = Path(out_dir)
        deployed_params = count_parameters(job.model)
        described = job.source.architecture()
        assert described is not None  # the deployment stage runs only on sources with a module
        record = architecture_record(
            described,
            list(self.example.shape[1:]),
            self.history,
            [p.to_dict() for p in self.plan.pruned],
            self.params_before,
            deployed_params,
        )
        atomic_write_bytes(out_dir / ARCHITECTURE_FILE, json.dumps(record, indent=1).encode())
        deployed = load_model(out_dir)  # the round trip a user makes: architecture.json + model.pth
        self.deployed = deployed
        evaluation = metrics.setdefault("evaluation", {})
        if self.before is not None:  # the upload's accuracy; the job's "before" saw the pruned model
            evaluation["pruned_before_retraining"] = evaluation.get("before")
            evaluation["before"] = self.before
        after = job._evaluate(deployed)
        if after is not None:
            evaluation["after"] = after
        if self.history:
            metrics["structured"] = {
                "method": "torch-pruning",
                "params_before": self.params_before,
                "params_after": deployed_params,
                **self.plan.to_dict(),
            }
        formats = spec.export_formats
        deployment: dict[str, Any] = {"exported": [f.value for f in formats]}
        if ExportFormat.onnx in formats:
            try:
                self._onnx(out_dir, deployed, deployment, progress)
            except CompressionError as error:
                if spec.export is not None or getattr(spec, "int8", None) is not None:
                    raise  # asked for: the job fails with the reason
                # the default export of an architecture the exporter cannot take: the job keeps its other
                # artifacts and says why there is no model.onnx
                log.warning("default ONNX export skipped: %s", error)
                (out_dir / "model.onnx").unlink(missing_ok=True)
                deployment["exported"] = []
                deployment["onnx_error"] = str(error)
            else:
                self._table(out_dir, deployed, deployment, progress)
        metrics["deployment"] = deployment

    def _onnx(
        self, out_dir: Path, deployed: nn.Module, deployment: dict[str, Any], progress: ProgressFn | None
    ) -> None:
        from compression_core.deploy.onnx_export import check_onnx, export_onnx

        if progress:
            progress("export", 0.92, "model.onnx")
        generator = torch.Generator().manual_seed(0)
        inputs = torch.randn(CHECK_SAMPLES, *self.example.shape[1:], generator=generator)
        if self.job.source.onnx_graph(out_dir) is None:  # an ONNX upload's own graph is already there
            export_onnx(deployed, self.example, out_dir / "model.onnx")
        check = check_onnx(
            deployed, out_dir / "model.onnx", inputs, rtol=ONNX_RTOL, threads=torch.get_num_threads()
        )
        deployment["onnx_check"] = dict(check)
        if not check["ok"]:
            raise CompressionError(
                f"model.onnx does not compute what model.pth computes: max abs difference "
                f"{check.get('max_abs_diff')} (relative {check.get('max_rel_diff')}) on {CHECK_SAMPLES} "
                "inputs"
            )
        self._deploy_methods(out_dir, deployment, progress)

    def _deploy_methods(self, out_dir: Path, deployment: dict[str, Any], progress: ProgressFn | None) -> None:
        """The registry's "deploy" methods the spec names (int8), each adding its section."""
        from compression_core.methods import registry
        from compression_core.methods.base import DeployMethod

        for method, config in registry.present_methods(self.spec):
            if not isinstance(method, DeployMethod):
                continue
            if progress:
                progress(method.name, 0.94, f"{method.spec.title}")
            deployment[method.name] = method.deploy(config, self, out_dir)

    def _table(
        self,
        out_dir: Path,
        deployed: nn.Module,
        deployment: dict[str, Any],
        progress: ProgressFn | None,
    ) -> None:
        from compression_core.deploy.onnx_export import export_onnx

        data, source = self.job.data, self.job.source
        if progress:
            progress("measure", 0.96, "latency and memory")
        threads = torch.get_num_threads()

        def original() -> nn.Module:
            module = source.module()  # the upload, as the source builds it
            assert module is not None  # the deployment stage runs only on sources with a module
            return module

        with tempfile.TemporaryDirectory(prefix="mcs-deploy-") as tmp:
            original_onnx = Path(tmp) / "original.onnx"
            if not source.original_onnx(original_onnx):  # an ONNX upload measures its own graph
                export_onnx(original(), self.example, original_onnx)
            candidates = [
                torch_candidate("original", source.path, self.params_before, original),
                onnx_candidate("original (ONNX)", original_onnx, self.params_before, threads),
                torch_candidate(
                    "model.pth",
                    out_dir / "model.pth",
                    count_parameters(deployed),
                    lambda: load_model(out_dir),
                ),
                onnx_candidate("model.onnx", out_dir / "model.onnx", count_parameters(deployed), threads),
            ]
            if (out_dir / "model.int8.onnx").is_file():
                candidates.append(
                    onnx_candidate(
                        "model.int8.onnx", out_dir / "model.int8.onnx", count_parameters(deployed), threads
                    )
                )
            if data is not None:  # errors only against the data's own labels (not the upload's predictions)
                inputs = data.eval_set.tensors[0].float()
                dataset = data.eval_set if data.labels_from == "data" else None
            else:
                inputs = torch.randn(32, *self.example.shape[1:], generator=torch.Generator().manual_seed(1))
                dataset = None
            options = MeasureOptions(device=self.job.device, runs_batch1=10, runs_throughput=3)
            deployment["table"] = deployment_table(candidates, inputs, _as_dataset(dataset), options)


def _as_dataset(dataset: Any) -> TensorDataset | None:
    return dataset if isinstance(dataset, TensorDataset) else None
