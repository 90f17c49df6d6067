"""The data-aware path of a job: build the model, load data, evaluate, retrain around the data-free steps.

`compress_file` (pipeline.py) hands a spec with `model` / `data` / `retrain` to `DataAwareJob`:

1. build the architecture, load the uploaded state dict into it (InputError naming bad keys), load the data
   and run one batch through the model (InputError when they do not fit);
2. evaluate before compression;
3. with `retrain.prune`: Deep Compression's iterative pruning. For each fraction f of `prune_schedule`
   every tensor a pruning rule owns is magnitude-pruned to `n - f (n - κ)` kept weights and the model
   retrained with the masks held (`finetune`);
4. the data-free compression of the retrained weights (`compress_state_dict`: prune, quantize, low-rank);
   pruned weights are exactly zero by now, so the final prune keeps exactly the retrained support;
5. with `retrain.finetune`: retraining of the compressed records with their structure held (centroids,
   kept values, factors; uncompressed biases train freely);
6. after encoding, `finish` evaluates the decoded `.bin` (what the user downloads), not the in-memory model.

metrics.json gains `evaluation.before` / `evaluation.after` and `training.history`; per-tensor `rel_error`
is measured against the uploaded weights, so it includes the drift of retraining.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from compression_core.data import DataSplits, check_against_model, load_data
from compression_core.errors import Cancelled, SpecError
from compression_core.evaluate import evaluate
from compression_core.finetune import EpochStats, finetune
from compression_core.methods.prune import global_keeps, keep_count, keep_positions
from compression_core.metrics import summarize, tensor_metrics
from compression_core.models import build_model, load_into
from compression_core.records import TensorRecord
from compression_core.select import select_tensors
from compression_core.spec import Scope, Spec

__all__ = ["DataAwareJob", "needs_data"]

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, float, str], None]  # stage, fraction of the job, message


def needs_data(spec: Spec) -> bool:
    return spec.model is not None or spec.data is not None or spec.retrain is not None or spec.lc is not None


def _target_keeps(state_dict: Mapping[str, torch.Tensor], spec: Spec) -> dict[str, int]:
    """Final κ of every tensor a pruning rule owns (global rules share one ranking, as in the pipeline)."""
    selections = select_tensors(state_dict, spec)
    keeps = global_keeps(state_dict, selections)
    for name, sel in selections.items():
        step = sel.rule.prune
        if step is not None and step.scope is not Scope.global_:
            keeps[name] = min(keep_count(step, state_dict[name].numel()), state_dict[name].numel())
    return keeps


class DataAwareJob:
    """One job's model and data, kept between `compress` and `finish`."""

    def __init__(
        self,
        spec: Spec,
        state_dict: Mapping[str, torch.Tensor],
        *,
        data_path: Any = None,
        device: str = "cpu",
        teacher_path: Any = None,
    ):
        if spec.model is None:
            raise SpecError(
                "data-aware steps (data, retrain) need the spec's `model` field to build the network"
            )
        if spec.retrain is not None and spec.data is None:
            raise SpecError("retraining needs the spec's `data` field (a built-in or the uploaded data file)")
        self.spec = spec
        self.device = device
        self.original = dict(state_dict)
        self.model: nn.Module = load_into(build_model(spec.model, fits=state_dict), state_dict)
        self.data: DataSplits | None = load_data(spec.data, data_path) if spec.data is not None else None
        if self.data is not None:
            check_against_model(self.data, self.model)
        self.history: list[EpochStats] = []
        self.evaluation: dict[str, Any] = {}
        self.teacher_path = teacher_path

    def _evaluate(self, model: nn.Module) -> dict[str, Any] | None:
        if self.data is None:
            return None
        return evaluate(
            model, self.data.eval_set, device=self.device, num_classes=self.data.num_classes
        ).to_dict()

    def evaluate_before(self) -> None:
        """Record the uploaded model's accuracy as `evaluation.before` (every data-aware method starts so)."""
        before = self._evaluate(self.model)
        if before is not None:
            self.evaluation["before"] = before

    def data_summary(self) -> dict[str, Any] | None:
        """What metrics.json says about the data set: its name, sizes and the split evaluated on."""
        if self.data is None:
            return None
        return {
            "name": self.data.name,
            "sizes": self.data.sizes,
            "evaluated_on": "test" if self.data.test is not None else "train (no test split uploaded)",
        }

    def compress(
        self,
        compress_state_dict: Callable[..., tuple[list[TensorRecord], dict[str, Any]]],
        *,
        progress: ProgressFn,
        should_cancel: Callable[[], bool] | None = None,
        span: tuple[float, float] = (0.0, 1.0),
    ) -> tuple[list[TensorRecord], dict[str, Any]]:
        """Records of the whole state dict after the retraining the spec asks for, and their metrics."""
        if self.spec.lc is not None:  # the LC algorithm instead of direct compression (compression_core.lc)
            from compression_core.lc.job import run_lc_job

            return run_lc_job(self, progress=progress, should_cancel=should_cancel, span=span)
        if self.spec.sws is not None:  # soft weight-sharing (compression_core.sws)
            from compression_core.sws.job import run_sws_job

            return run_sws_job(
                self, compress_state_dict, progress=progress, should_cancel=should_cancel, span=span
            )
        lo, hi = span
        distilled = None
        if self.spec.distill is not None:  # train the student from the teacher first (distill.py)
            from compression_core.distill import run_distill

            mid = lo + (hi - lo) * 0.5
            distilled = run_distill(
                self, self.teacher_path, progress=progress, should_cancel=should_cancel, span=(lo, mid)
            )
            lo = mid
        retrain = self.spec.retrain
        prune_cfg = retrain.prune if retrain is not None else None
        tune_cfg = retrain.finetune if retrain is not None else None
        schedule = retrain.prune_schedule if retrain is not None else [1.0]
        total_epochs = max(
            1, (prune_cfg.epochs * len(schedule) if prune_cfg else 0) + (tune_cfg.epochs if tune_cfg else 0)
        )
        done = 0

        def on_epoch(stats: EpochStats) -> None:
            nonlocal done
            done += 1
            self.history.append(stats)
            err = "" if stats.test_error is None else f", test error {100 * stats.test_error:.2f}%"
            progress(
                stats.stage,
                lo + (hi - lo) * 0.9 * done / total_epochs,
                f"epoch {stats.epoch}/{stats.epochs}: loss {stats.train_loss:.4f}{err}",
            )

        progress("evaluate", lo, "before compression")
        self.evaluate_before()
        assert self.data is not None or (prune_cfg is None and tune_cfg is None)

        if prune_cfg is not None:
            assert self.data is not None
            targets = _target_keeps(self.original, self.spec)
            if not targets:
                raise SpecError("retrain.prune is set but no rule prunes any tensor")
            for i, fraction in enumerate(schedule, start=1):
                if should_cancel is not None and should_cancel():
                    raise Cancelled("cancelled between pruning iterations")
                params = dict(self.model.state_dict())
                records = []
                for name, kappa in targets.items():
                    weight = params[name]
                    keep = max(1, round(weight.numel() - fraction * (weight.numel() - kappa)))
                    positions = keep_positions(weight.detach().cpu(), keep)
                    records.append(
                        TensorRecord(
                            name=name,
                            shape=tuple(weight.shape),
                            dtype=weight.dtype,
                            values=weight.detach().cpu().reshape(-1)[positions].float(),
                            positions=positions,
                            method="prune",
                        )
                    )
                finetune(
                    self.model,
                    records,
                    self.data.train,
                    prune_cfg.model_copy(
                        update={"seed": prune_cfg.seed + i}
                    ),  # a new shuffle order each round
                    eval_set=self.data.test,
                    device=self.device,
                    on_epoch=on_epoch,
                    should_cancel=should_cancel,
                    stage=f"prune-retrain {i}/{len(schedule)}",
                )

        current = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        state = {name: current[name] for name in self.original}
        at = lo + (hi - lo) * 0.9 * done / total_epochs
        records, metrics = compress_state_dict(
            state, self.spec, should_cancel=should_cancel, span=(at, at + (hi - lo) * 0.1)
        )
        rules = {entry["name"]: entry.get("rule") for entry in metrics["tensors"]}

        if tune_cfg is not None:
            assert self.data is not None
            result = finetune(
                self.model,
                records,
                self.data.train,
                tune_cfg,
                eval_set=self.data.test,
                device=self.device,
                on_epoch=on_epoch,
                should_cancel=should_cancel,
                stage="finetune",
            )
            records = result.records

        metrics["tensors"] = [
            tensor_metrics(r.name, self.original[r.name], r, rules.get(r.name)) for r in records
        ]
        metrics["totals"] = summarize(metrics["tensors"])
        metrics["evaluation"] = self.evaluation
        data_summary = self.data_summary()
        if data_summary is not None:
            metrics["evaluation"]["data"] = data_summary
        metrics["training"] = {"history": [s.to_dict() for s in self.history]}
        if distilled is not None:
            metrics["distill"] = distilled
        return records, metrics

    def finish(self, decoded: Mapping[str, torch.Tensor], metrics: dict[str, Any]) -> None:
        """Evaluate the decoded artifact and add it to metrics as `evaluation.after`."""
        assert self.spec.model is not None
        model = load_into(build_model(self.spec.model), decoded)
        after = self._evaluate(model)
        if after is not None:
            metrics.setdefault("evaluation", {})["after"] = after
        if self.data is not None and any(r.structured is not None for r in self.spec.rules):
            from compression_core.methods.structured import structured_report  # the smaller model

            names = [e["name"] for e in metrics["tensors"] if e.get("method", "").startswith("structured")]
            example = self.data.eval_set.tensors[0][:8]
            metrics["structured"] = structured_report(
                model, names, example, self.spec.model.arch, self.spec.model.kwargs
            )
