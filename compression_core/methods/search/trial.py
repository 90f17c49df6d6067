"""One trial of a search: the ordinary pipeline on the training split minus the validation samples, then
the compressed model measured on the validation split too (what the search chooses on). The test split
stays the reported `evaluation` of metrics.json; `search_trial.validation` holds the validation errors."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from compression_core.errors import SpecError
from compression_core.methods.search.spec import Holdout
from compression_core.methods.search.validation import split_validation

__all__ = ["compress_on_arrays", "run_trial"]

log = logging.getLogger(__name__)


def run_trial(
    model_path: Path,
    spec: Any,
    out_dir: Path,
    holdout: Holdout,
    *,
    progress: Callable[..., None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    device: str = "cpu",
    data_path: Path | None = None,
    inputs: Mapping[str, Path] | None = None,
    checkpoint_dir: Path | None = None,
    needs_labels: bool = False,
) -> dict[str, Any]:
    """Write out_dir/{model.bin, model.pth, metrics.json} like `compress_file`; returns the metrics.
    `checkpoint_dir` is the trial job's folder, as for `compress_file` (a trial running LC resumes there).
    The validation split measures the error (with labels) and the fidelity to the upload (always);
    `needs_labels`: the search's budget is an error, so data without labels is refused."""
    from compression_core.data import load_data
    from compression_core.errors import InputError
    from compression_core.evaluate import evaluate
    from compression_core.fidelity import measure as fidelity
    from compression_core.fidelity import reference_outputs
    from compression_core.metrics import write_metrics

    if spec.data is None or spec.model is None:
        raise SpecError("search: a trial needs the spec's `model` and `data` (it is measured on data)")
    clock = time.perf_counter()
    splits = load_data(spec.data, data_path)
    if needs_labels and not splits.labelled:
        raise InputError(
            f"search.max_error_increase: {splits.name} has no labels (no y_train), so no error can be "
            "measured; state the budget as search.min_top1_agreement or search.max_relative_output_error "
            "(fidelity to the uploaded model), or upload y_* labels"
        )
    trial_data = split_validation(splits, holdout.fraction, holdout.seed)
    # what the trial's job reads as its uploaded data
    arrays = {"x_train": trial_data.splits.train.tensors[0].numpy()}
    if splits.test is not None:
        arrays["x_test"] = splits.test.tensors[0].numpy()
    if splits.labelled:  # without labels the trial takes them from the upload itself, as any job
        arrays["y_train"] = trial_data.splits.train.tensors[1].numpy()
        if splits.test is not None:
            arrays["y_test"] = splits.test.tensors[1].numpy()
    if splits.validation is not None and len(splits.validation) > 0:
        # the data set's own validation split: the trial's job validates on it as the job itself would,
        # instead of carving a smaller one out of x_train (and warning that it did)
        arrays["x_val"] = splits.validation.tensors[0].numpy()
        if splits.labelled:
            arrays["y_val"] = splits.validation.tensors[1].numpy()
    metrics = compress_on_arrays(
        model_path,
        spec,
        out_dir,
        arrays,
        progress=progress,
        should_cancel=should_cancel,
        device=device,
        inputs=inputs,
        checkpoint_dir=checkpoint_dir,
    )

    x_val = trial_data.validation.tensors[0]
    reference: Any = None

    def measure(weights: Path | None) -> dict[str, Any]:
        """The upload (`weights` None) or the trial's model.pth, in the module the upload's source builds
        (a named architecture, an ONNX graph); a trial with architecture.json is what `load_model` gives."""
        from compression_core.deploy.architecture import ARCHITECTURE_FILE, load_model
        from compression_core.io import load_state_dict

        nonlocal reference
        from compression_core.sources import open_source

        model: Any
        if weights is not None and (weights.parent / ARCHITECTURE_FILE).is_file():
            model = load_model(weights.parent)
        else:
            with open_source(model_path, spec.model) as source:
                model = source.module(None if weights is None else load_state_dict(weights))
        assert model is not None  # the spec names the architecture (checked above)
        if reference is None:  # the upload, measured first: what fidelity is measured against
            reference = reference_outputs(model, x_val, what="the uploaded model's outputs on validation")
        found: dict[str, Any] = {"error": None, "samples": len(x_val), "loss": None}
        if splits.labelled:
            result = evaluate(
                model, trial_data.validation, device=device, num_classes=splits.num_classes, timing=False
            )
            found |= {"error": result.error, "samples": result.samples, "loss": result.loss}
        found["fidelity"] = fidelity(model, x_val, reference).to_dict()
        return found

    metrics["search_trial"] = {
        "validation": {
            "before": measure(None),
            "after": measure(Path(out_dir) / "model.pth"),
            "fraction": holdout.fraction,
            "seed": holdout.seed,
            "split": "held out of the training split; the trial retrained on the rest",
        },
        "seconds": time.perf_counter() - clock,
    }
    data = metrics.get("evaluation", {}).get("data")
    if isinstance(data, dict):
        data["name"] = splits.name
        data["sizes"] = {**trial_data.splits.sizes, "validation": len(trial_data.validation)}
    write_metrics(Path(out_dir) / "metrics.json", metrics)
    return metrics


def compress_on_arrays(
    model_path: Path, spec: Any, out_dir: Path, arrays: Mapping[str, Any], **job: Any
) -> dict[str, Any]:
    """`compress_file` on data carved from the upload: `arrays` written to a temporary .npz that the
    trial's job reads as its uploaded data (the job's own loading, checks and splits, unchanged)."""
    from compression_core.job.pipeline import compress_file
    from compression_core.spec import DataSpec

    folder = Path(tempfile.mkdtemp(prefix="mcs-trial-"))
    try:
        carved = folder / "trial-data.npz"
        np.savez(carved, **arrays)
        return compress_file(
            Path(model_path),
            spec.model_copy(update={"data": DataSpec(upload=True)}),
            Path(out_dir),
            data_path=carved,
            **job,
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
