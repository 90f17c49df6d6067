"""The pipeline hook: a spec with `lc` (plus `model` and `data`) runs the LC algorithm instead of direct
compression. The job (`compression_core.job`) then encodes the records, writes the files and evaluates the
decoded `.bin`, exactly as for direct compression.

metrics.json gains an `lc` section: the configuration, the μ schedule's ends and one entry per LC step
(μ, learning rate, train loss, penalty, ||w - Δ(Θ)|| / ||w||, error of Δ(Θ), kept / codebook / rank
per tensor); step 0 is the direct compression the run started from. The per-step errors (`validation_error`
fields) are measured on the section's `split` (the validation split; `n` samples); only `evaluation.after` is
test.
With the job's `checkpoint_dir` the run resumes after a worker restart (`resumed_at_step`; checkpoint.py).
"""

from __future__ import annotations

from compression_core.job.context import JobContext
from compression_core.methods.apply import dense_record
from compression_core.methods.base import CompressFn, Outcome
from compression_core.methods.lc.algorithm import LCStepStats, run_lc
from compression_core.methods.lc.spec import LCSpec
from compression_core.spec.base import DefaultDtype

__all__ = ["run"]


def _step_message(stats: LCStepStats, steps: int) -> str:
    parts = [f"LC step {stats.step}/{steps}: mu {stats.mu:.3g}"]
    if stats.train_loss is not None:
        parts.append(f"loss {stats.train_loss:.4f}")
    if stats.validation_error is not None:
        parts.append(f"validation error of Δ(Θ) {100 * stats.validation_error:.2f}%")
    return ", ".join(parts)


def run(config: LCSpec, job: JobContext, compress: CompressFn) -> Outcome:
    """Records of the whole state dict (state-dict order) after the LC run; its C steps compress by the rules
    directly (`compress` is not needed)."""
    spec, data = job.spec, job.data
    assert data is not None  # the spec validator requires model and data with lc
    lo, hi = job.span
    steps = config.steps
    job.progress("evaluate", lo, "before compression")
    job.evaluate_before()

    def on_step(stats: LCStepStats) -> None:
        job.progress("lc", lo + (hi - lo) * (stats.step + 1) / (steps + 1), _step_message(stats, steps))

    result = run_lc(
        job.model,
        spec,
        data.train,
        eval_set=data.choice_set,  # per-step errors on validation; only evaluation.after reports test
        device=job.device,
        on_step=on_step,
        should_cancel=job.should_cancel,
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
    seconds: dict[str, float] = {}
    for record in result.records.values():  # the last C step's method times
        for step_name, took in record.stats.get("seconds", {}).items():
            seconds[step_name] = seconds.get(step_name, 0.0) + took
    seconds["lc"] = sum(s.seconds for s in result.history)
    history = [s.to_dict() for s in result.history]
    evaluated = [h for h in history if h["validation_error"] is not None]
    return Outcome(
        records=records,
        rules={name: sel.label for name, sel in result.selections.items()},
        seconds=seconds,
        training={"algorithm": "lc", "history": []},
        section=job.monitored(
            {
                "config": config.model_dump(mode="json"),
                "mu_first": config.mu0,
                "mu_last": config.mu_schedule()[-1],
                "direct_compression_error": history[0]["validation_error"],
                "final_error": evaluated[-1]["validation_error"] if evaluated else None,
                "resumed_at_step": result.resumed_at,
                "history": history,
            }
        ),
    )
