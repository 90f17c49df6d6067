"""The pipeline hook: a spec with `lc` (plus `model` and `data`) runs the LC algorithm instead of direct
compression. `DataAwareJob.compress` hands over here; `compress_file` then encodes the records, writes the
files and `DataAwareJob.finish` evaluates the decoded `.bin`, exactly as for direct compression.

metrics.json gains an `lc` section: the configuration, the μ schedule's ends and one entry per LC step
(μ, learning rate, train loss, penalty, ||w - Δ(Θ)|| / ||w||, error of Δ(Θ), kept / codebook / rank
per tensor); step 0 is the direct compression the run started from. The per-step errors (`test_error` fields)
are measured on the section's `split` (the validation split; `n` samples); only `evaluation.after` is test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from compression_core import __version__
from compression_core.lc.algorithm import LCStepStats, run_lc
from compression_core.methods.apply import dense_record
from compression_core.metrics import summarize, tensor_metrics
from compression_core.records import TensorRecord
from compression_core.spec import DefaultDtype

if TYPE_CHECKING:
    from compression_core.data_aware import DataAwareJob

__all__ = ["run_lc_job"]

ProgressFn = Callable[[str, float, str], None]


def _step_message(stats: LCStepStats, steps: int) -> str:
    parts = [f"LC step {stats.step}/{steps}: mu {stats.mu:.3g}"]
    if stats.train_loss is not None:
        parts.append(f"loss {stats.train_loss:.4f}")
    if stats.test_error is not None:
        parts.append(f"validation error of Δ(Θ) {100 * stats.test_error:.2f}%")
    return ", ".join(parts)


def run_lc_job(
    job: DataAwareJob,
    *,
    progress: ProgressFn,
    should_cancel: Callable[[], bool] | None = None,
    span: tuple[float, float] = (0.0, 1.0),
) -> tuple[list[TensorRecord], dict[str, Any]]:
    """Records of the whole state dict (state-dict order) after the LC run, and their metrics."""
    spec, data = job.spec, job.data
    assert spec.lc is not None and data is not None  # the spec validator requires model and data with lc
    lo, hi = span
    steps = spec.lc.steps
    progress("evaluate", lo, "before compression")
    job.evaluate_before()

    def on_step(stats: LCStepStats) -> None:
        progress("lc", lo + (hi - lo) * (stats.step + 1) / (steps + 1), _step_message(stats, steps))

    result = run_lc(
        job.model,
        spec,
        data.train,
        eval_set=data.choice_set,  # per-step errors on validation; only evaluation.after reports test
        device=job.device,
        on_step=on_step,
        should_cancel=should_cancel,
        checkpoint_dir=job.checkpoint_dir,
    )
    float16 = spec.default.dtype is DefaultDtype.float16
    state = job.model.state_dict()
    records = [
        result.records[name]
        if name in result.records
        else dense_record(name, state[name].detach().cpu(), float16=float16)
        for name in job.original
    ]
    entries = [
        tensor_metrics(
            r.name,
            job.original[r.name],
            r,
            result.selections[r.name].label if r.name in result.selections else None,
        )
        for r in records
    ]
    seconds: dict[str, float] = {}
    for record in result.records.values():  # the last C step's method times
        for step_name, took in record.stats.get("seconds", {}).items():
            seconds[step_name] = seconds.get(step_name, 0.0) + took
    seconds["lc"] = sum(s.seconds for s in result.history)
    history = [s.to_dict() for s in result.history]
    evaluated = [h for h in history if h["test_error"] is not None]
    metrics: dict[str, Any] = {
        "version": 1,
        "library": f"compression_core {__version__}",
        "device": job.device,
        "totals": summarize(entries),
        "timing": {"seconds": seconds},
        "tensors": entries,
        "evaluation": dict(
            job.evaluation,
            data=job.data_summary(),
        ),
        "training": {"algorithm": "lc", "history": []},
        "lc": job.monitored(
            {
                "config": spec.lc.model_dump(mode="json"),
                "mu_first": spec.lc.mu0,
                "mu_last": spec.lc.mu_schedule()[-1],
                "direct_compression_error": history[0]["test_error"],
                "final_error": evaluated[-1]["test_error"] if evaluated else None,
                "resumed_at_step": result.resumed_at,
                "history": history,
            }
        ),
    }
    job.evaluation = metrics["evaluation"]
    return records, metrics
