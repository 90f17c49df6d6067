"""A data-aware job's context: the model built from the upload, the data, the original weights, the extra
inputs (e.g. the teacher), progress and cancellation. Whole-model methods receive it in `run`.

1. the model source builds the trainable module holding the uploaded weights (InputError naming bad keys),
   load the data and run one batch through the model (InputError when they do not fit);
   the upload's outputs on the reported split are kept (`reference`: what fidelity is measured against;
   data without labels takes the upload's top-1 predictions as labels, `compression_core/fidelity.py`);
2. a method evaluates before compression (`evaluate_before`), trains and compresses (its `run`);
3. after the files are written, the deployment stage (`deploy/stage.py`) evaluates the model rebuilt from
   them (what the user downloads), not the in-memory model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compression_core.data import DataSplits
from compression_core.errors import Cancelled, InputError, SpecError
from compression_core.evaluate import evaluate, measure_latency
from compression_core.fidelity import class_axis, measure, predict_top1, reference_outputs
from compression_core.methods import registry
from compression_core.methods.base import CompressMethod, PrepareMethod
from compression_core.sources import ModelSource
from compression_core.spec.model import SpecBase
from compression_core.training.loop import EpochStats, renamed_for_split

__all__ = ["JobContext", "ProgressFn"]

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, float, str], None]  # stage, fraction of the job, message


class JobContext:
    """One job's model, data and inputs, kept between the methods' `run` and `finish`."""

    def __init__(
        self,
        spec: SpecBase,
        state_dict: Mapping[str, torch.Tensor],
        *,
        source: ModelSource,
        data_path: Any = None,
        device: str = "cpu",
        inputs: Mapping[str, Path] | None = None,
        progress: ProgressFn | None = None,
        should_cancel: Callable[[], bool] | None = None,
        span: tuple[float, float] = (0.0, 1.0),
    ):
        model = source.module(state_dict)
        if model is None:
            raise SpecError(
                "data-aware steps (data, retrain) need the spec's `model` field to build the network"
            )
        self.spec = spec
        self.source = source
        self.device = device
        self.original = dict(state_dict)  # what per-tensor rel_error is measured against
        self.model: nn.Module = model
        loaded = source.load_data(spec.data, data_path, self.model) if spec.data is not None else None
        # a classification data set (what the training methods use) or the source's own kind of data (a
        # language model's token ids: `sources/hf/lm.py`), which only the source evaluates
        self.data: DataSplits | None = loaded if isinstance(loaded, DataSplits) else None
        self.other_data: Any = None if isinstance(loaded, DataSplits) else loaded
        self.reference: torch.Tensor | None = None  # the upload's outputs on the reported split
        if self.data is not None:
            if self.data.validation_warning:  # also in metrics.json, report.html and `mcs submit`
                log.warning("%s: %s", self.data.name, self.data.validation_warning)
            self._take_reference(self.data)
        self.inputs: dict[str, Path] = dict(inputs or {})
        self.history: list[EpochStats] = []
        self.evaluation: dict[str, Any] = {}
        self.progress: ProgressFn = progress or (lambda stage, fraction, message: None)
        self.should_cancel = should_cancel
        self.span = span
        self.checkpoint_dir: Path | None = None  # where long runs checkpoint (compress_file sets it)
        # outputs a method adds to the job's folder once model.bin and the dense outputs are written
        # (weight quantization's packed checkpoint): each writes into the folder and returns its files
        self.writers: list[Callable[[Path], list[Path]]] = []
        # a causal LM's training loss when not its own (distillation to a teacher: methods/distill/lm.py)
        self.lm_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None

    def _take_reference(self, data: DataSplits) -> None:
        """Keep the upload's outputs on the reported split (what fidelity is measured against); data without
        labels takes the upload's top-1 predictions as labels when its outputs are class scores, and a
        model whose outputs are not is refused for the methods that train on labels."""
        split = data.eval_split
        home = next((p.device for p in self.model.parameters()), torch.device("cpu"))
        self.model.to(self.device)  # the passes run where the job runs; the model goes back afterwards
        try:
            self.reference = reference_outputs(
                self.model,
                data.eval_set.tensors[0],
                what=f"the uploaded model's outputs on the {split} split",
            )
            shape = tuple(self.reference.shape[1:])
            scores = len(shape) == 1 and class_axis(shape)
            if not data.labelled and scores:  # class scores: the upload's top-1 is the label
                data.take_labels(lambda x: predict_top1(self.model, x), "predictions")
                log.info("%s: no labels; the uploaded model's top-1 predictions are the labels", data.name)
        finally:
            self.model.to(home)
        if data.labelled or scores:
            return
        training = [
            m.name
            for m, _ in registry.present_methods(self.spec)
            if isinstance(m, PrepareMethod | CompressMethod)
        ]
        if training:
            raise InputError(
                f"{data.name}: {', '.join(training)} train on labels; the data has none (no y_train) and "
                f"the model's outputs of shape {list(shape)} per sample are not class scores, so none can be "
                "taken from its predictions; upload y_* labels, or drop those methods (data-free steps are "
                "measured by fidelity to the uploaded model)"
            )

    def check_cancel(self, where: str) -> None:
        if self.should_cancel is not None and self.should_cancel():
            raise Cancelled(f"cancelled {where}")

    def _evaluate(self, model: nn.Module) -> dict[str, Any] | None:
        """The reported evaluation (the test split), tagged with its `split` and `n`: error, top-1, ... when
        the data has labels, always `fidelity` to the upload (`compression_core/fidelity.py`) and `labels`
        (where they came from: "data", "predictions" of the upload, or "none"; without labels of the data
        no error is reported)."""
        if self.data is None:  # no data, or the source's own kind (token ids): the source evaluates it
            if self.other_data is None:
                return None
            return self.source.evaluate(model, self.other_data, self.device)
        data = self.data
        if data.labels_from == "data":
            ev = evaluate(model, data.eval_set, device=self.device, num_classes=data.num_classes)
            result = ev.to_dict()
        else:
            result = _timed(model, data.eval_set.tensors[0], self.device)
        if self.reference is not None:
            result["fidelity"] = measure(model, data.eval_set.tensors[0], self.reference).to_dict()
        result["labels"] = data.labels_from
        return {**result, **data.info(data.eval_split)}

    def monitored(self, section: dict[str, Any]) -> dict[str, Any]:
        """A history section tagged with the split its per-epoch errors come from (the validation split).

        The loops name those errors `validation_*`; a run without a validation split (`data.validation`
        0, a tiny upload) monitors the reported split instead, and its entries are renamed for it."""
        if self.data is None:
            return section
        split = self.data.choice_split
        if split != "validation" and isinstance(section.get("history"), list):
            section = {**section, "history": [renamed_for_split(h, split) for h in section["history"]]}
        return {**section, **self.data.info(split)}

    def evaluate_before(self) -> None:
        """Record the uploaded model's accuracy as `evaluation.before` (every data-aware method starts so)."""
        before = self._evaluate(self.model)
        if before is not None:
            self.evaluation["before"] = before

    def data_summary(self) -> dict[str, Any] | None:
        """What metrics.json says about the data set: its name, sizes and the split evaluated on."""
        if self.data is None:
            summary = getattr(self.other_data, "summary", None)
            return summary() if callable(summary) else None
        evaluated = self.data.eval_split
        warning = self.data.validation_warning
        return {
            "name": self.data.name,
            "sizes": self.data.sizes,
            "evaluated_on": evaluated if evaluated == "test" else f"{evaluated} (no test split uploaded)",
            "chosen_on": self.data.choice_split,
            "validation_from": self.data.index_spaces.get("validation") if self.data.validation else None,
            "validation_fraction": self.spec.data.validation if self.spec.data is not None else None,
            "labels": self.data.labels_from,
            "warnings": [warning] if warning else [],
        }


def _timed(model: nn.Module, x: torch.Tensor, device: str) -> dict[str, Any]:
    """What `evaluate` reports without labels: the sample count, latency and peak memory on `device`."""
    model = model.to(device)
    was_training = model.training
    model.eval()
    try:
        batch = x[:64].to(device)
        per_batch, peak, source = measure_latency(model, batch)
    finally:
        model.train(was_training)
    return {
        "samples": len(x),
        "latency_ms_per_batch": per_batch,
        "latency_ms_per_sample": per_batch / len(batch),
        "latency_batch_size": len(batch),
        "peak_memory_bytes": peak,
        "memory_source": source,
        "device": str(torch.device(device)),
    }
