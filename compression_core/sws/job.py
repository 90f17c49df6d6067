"""The pipeline hook: a spec with `sws` (plus `model` and `data`) retrains with the mixture prior and stores
the selected tensors as prune + codebook records. Tensors outside `sws.select` go through the spec's rules
(or the default policy) after retraining; a rule may not select an SWS tensor. `compress_file` then encodes
the records and `DataAwareJob.finish` evaluates the decoded `.bin`, exactly as for direct compression.

metrics.json gains an `sws` section: the configuration, the learned and merged mixture, sparsity, the
number of components left and one entry per epoch (cross-entropy, prior term, error before quantizing, on the
section's `split`: the validation split).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from compression_core.errors import SpecError
from compression_core.metrics import summarize, tensor_metrics
from compression_core.records import TensorRecord
from compression_core.select import select_tensors
from compression_core.sws.algorithm import SWSEpochStats, run_sws, sws_tensor_names

if TYPE_CHECKING:
    from compression_core.data_aware import DataAwareJob

__all__ = ["run_sws_job"]

ProgressFn = Callable[[str, float, str], None]


def run_sws_job(
    job: DataAwareJob,
    compress_state_dict: Callable[..., tuple[list[TensorRecord], dict[str, Any]]],
    *,
    progress: ProgressFn,
    should_cancel: Callable[[], bool] | None = None,
    span: tuple[float, float] = (0.0, 1.0),
) -> tuple[list[TensorRecord], dict[str, Any]]:
    """Records of the whole state dict (state-dict order) after SWS, and their metrics."""
    spec, data = job.spec, job.data
    assert spec.sws is not None and data is not None  # the spec validator requires model and data with sws
    lo, hi = span
    names = set(sws_tensor_names(job.original, spec.sws))
    taken = sorted(n for n in select_tensors(job.original, spec) if n in names)  # empty rules: none
    if taken:
        raise SpecError(f"sws: {taken} are trained by SWS and selected by a rule too; narrow one of them")
    progress("evaluate", lo, "before compression")
    job.evaluate_before()

    def on_epoch(stats: SWSEpochStats) -> None:
        err = "" if stats.test_error is None else f", validation error {100 * stats.test_error:.2f}%"
        progress(
            "sws",
            lo + (hi - lo) * 0.9 * stats.epoch / stats.epochs,
            f"SWS epoch {stats.epoch}/{stats.epochs}: loss {stats.train_loss:.4f}{err}",
        )

    result = run_sws(
        job.model,
        spec.sws,
        data.train,
        eval_set=data.choice_set,  # per-epoch errors on validation; only evaluation.after reports test
        device=job.device,
        on_epoch=on_epoch,
        should_cancel=should_cancel,
    )
    state = {k: v.detach().cpu() for k, v in job.model.state_dict().items()}
    rest = {name: state[name] for name in job.original if name not in names}
    at = lo + (hi - lo) * 0.9
    other, metrics = compress_state_dict(rest, spec, should_cancel=should_cancel, span=(at, hi))
    by_name = {r.name: r for r in other} | result.records
    records = [by_name[name] for name in job.original]
    rules = {entry["name"]: entry.get("rule") for entry in metrics["tensors"]}
    metrics["tensors"] = [
        tensor_metrics(r.name, job.original[r.name], r, "sws" if r.name in names else rules.get(r.name))
        for r in records
    ]
    metrics["totals"] = summarize(metrics["tensors"])
    metrics["evaluation"] = dict(
        job.evaluation,
        data=job.data_summary(),
    )
    job.evaluation = metrics["evaluation"]
    metrics["training"] = {"algorithm": "sws", "history": []}
    metrics["timing"]["seconds"]["sws"] = sum(h.seconds for h in result.history)
    metrics["sws"] = job.monitored(
        {
            "config": spec.sws.model_dump(mode="json"),
            **result.summary,
            "learned": {
                "means": result.learned.means.tolist(),
                "sigmas": torch.from_numpy(-0.5 * result.learned.log_precisions).exp().tolist(),
                "pis": torch.from_numpy(result.learned.log_pis).exp().tolist(),
            },
            "history": [h.to_dict() for h in result.history],
        }
    )
    return records, metrics
