"""The pipeline hook: a spec with `sws` (plus `model` and `data`) retrains with the mixture prior and stores
the selected tensors as prune + codebook records. Tensors outside `sws.select` go through the spec's rules
(or the default policy) after retraining; a rule may not select an SWS tensor. The job then encodes the
records and evaluates the decoded `.bin`, exactly as for direct compression.

metrics.json gains an `sws` section: the configuration, the learned and merged mixture, sparsity, the
number of components left and one entry per epoch (cross-entropy, prior term, error before quantizing, on the
section's `split`: the validation split). With the job's `checkpoint_dir` the run resumes after a worker
restart at the epoch after the last finished one (`resumed_at_epoch`; algorithm.py).
"""

from __future__ import annotations

import torch

from compression_core.errors import SpecError
from compression_core.job.context import JobContext
from compression_core.methods.base import CompressFn, Outcome
from compression_core.methods.sws.algorithm import SWSEpochStats, run_sws, sws_tensor_names
from compression_core.methods.sws.spec import SWSSpec
from compression_core.select import select_tensors

__all__ = ["run"]


def run(config: SWSSpec, job: JobContext, compress: CompressFn) -> Outcome:
    """Records of the whole state dict (state-dict order) after SWS; the rest compressed by the rules."""
    spec, data = job.spec, job.data
    assert data is not None  # the spec validator requires model and data with sws
    lo, hi = job.span
    names = set(sws_tensor_names(job.original, config))
    taken = sorted(n for n in select_tensors(job.original, spec) if n in names)  # empty rules: none
    if taken:
        raise SpecError(f"sws: {taken} are trained by SWS and selected by a rule too; narrow one of them")
    job.progress("evaluate", lo, "before compression")
    job.evaluate_before()

    def on_resume(epoch: int) -> None:
        job.progress(
            "sws",
            lo + (hi - lo) * 0.9 * (epoch - 1) / config.epochs,
            f"SWS resuming at epoch {epoch}/{config.epochs} from the job's checkpoint"
            if epoch <= config.epochs
            else f"SWS: all {config.epochs} epochs were done before the restart (job's checkpoint)",
        )

    def on_epoch(stats: SWSEpochStats) -> None:
        err = (
            ""
            if stats.validation_error is None
            else f", validation error {100 * stats.validation_error:.2f}%"
        )
        job.progress(
            "sws",
            lo + (hi - lo) * 0.9 * stats.epoch / stats.epochs,
            f"SWS epoch {stats.epoch}/{stats.epochs}: loss {stats.train_loss:.4f}{err}",
        )

    result = run_sws(
        job.model,
        config,
        data.train,
        eval_set=data.choice_set,  # per-epoch errors on validation; only evaluation.after reports test
        device=job.device,
        on_epoch=on_epoch,
        should_cancel=job.should_cancel,
        checkpoint_dir=job.checkpoint_dir,
        checkpoint_key=spec.model_dump_json(),  # rules, method settings, model and data
        on_resume=on_resume,
    )
    state = {k: v.detach().cpu() for k, v in job.model.state_dict().items()}
    rest = {name: state[name] for name in job.original if name not in names}
    at = lo + (hi - lo) * 0.9
    other, metrics = compress(rest, spec, should_cancel=job.should_cancel, span=(at, hi))
    by_name = {r.name: r for r in other} | result.records
    rules = {entry["name"]: entry.get("rule") for entry in metrics["tensors"]}
    seconds = dict(metrics["timing"]["seconds"], sws=sum(h.seconds for h in result.history))
    return Outcome(
        records=[by_name[name] for name in job.original],
        rules={name: "sws" if name in names else rules.get(name) for name in job.original},
        seconds=seconds,
        training={"algorithm": "sws", "history": []},
        section=job.monitored(
            {
                "config": config.model_dump(mode="json"),
                **result.summary,
                "resumed_at_epoch": result.resumed_at,
                "learned": {
                    "means": result.learned.means.tolist(),
                    "sigmas": torch.from_numpy(-0.5 * result.learned.log_precisions).exp().tolist(),
                    "pis": torch.from_numpy(result.learned.log_pis).exp().tolist(),
                },
                "history": [h.to_dict() for h in result.history],
            }
        ),
    )
