"""Deep Compression's retraining around the rules' data-free steps (and, with no `retrain` field, what every
data-aware job does: evaluate, compress, evaluate the decoded `.bin`).

1. evaluate before compression;
2. with `retrain.prune`: iterative pruning. For each fraction f of `prune_schedule` every tensor a pruning
   rule owns is magnitude-pruned to `n - f (n - κ)` kept weights (an N:M pattern's to M - floor(f (M - N))
   of every M) and the model retrained with the masks held (`training.finetune`);
3. the data-free compression of the retrained weights (prune, quantize, low-rank, ...); pruned weights are
   exactly zero by now, so the final prune keeps exactly the retrained support;
4. with `retrain.finetune`: retraining of the compressed records with their structure held (centroids,
   kept values, factors; uncompressed biases train freely).

Per-tensor `rel_error` is measured against the uploaded weights, so it includes the drift of retraining.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from compression_core.errors import SpecError
from compression_core.job.context import JobContext
from compression_core.methods.base import CompressFn, Outcome
from compression_core.methods.prune.apply import global_keeps, keep_count, keep_positions
from compression_core.methods.prune.pattern import group_keep, pattern_positions
from compression_core.methods.prune.spec import PruneStep, Scope
from compression_core.methods.retrain.lm import evaluate_records, is_lm_job, lm_training
from compression_core.methods.retrain.spec import RetrainSpec
from compression_core.records import TensorRecord
from compression_core.select import select_tensors
from compression_core.spec.model import SpecBase
from compression_core.training.finetune import finetune
from compression_core.training.loop import EpochStats, train_epochs

__all__ = ["run", "target_keeps", "target_patterns"]


def target_keeps(state_dict: Mapping[str, torch.Tensor], spec: SpecBase) -> dict[str, int]:
    """Final κ of every tensor a pruning rule owns (global rules share one ranking, as in the pipeline)."""
    selections = select_tensors(state_dict, spec)
    keeps = global_keeps(state_dict, selections)
    for name, sel in selections.items():
        step = sel.rule.step("prune")
        if isinstance(step, PruneStep) and step.scope is not Scope.global_ and step.nm is None:
            keeps[name] = min(keep_count(step, state_dict[name].numel()), state_dict[name].numel())
    return keeps


def target_patterns(state_dict: Mapping[str, torch.Tensor], spec: SpecBase) -> dict[str, tuple[int, int]]:
    """(N, M) of every tensor a rule prunes with an N:M `pattern`."""
    patterns = {}
    for name, sel in select_tensors(state_dict, spec).items():
        step = sel.rule.step("prune")
        if isinstance(step, PruneStep) and step.nm is not None:
            patterns[name] = step.nm
    return patterns


def _pruned(
    params: Mapping[str, torch.Tensor],
    targets: Mapping[str, int | tuple[int, int]],
    fraction: float,
) -> list[TensorRecord]:
    """Records holding each target's mask at `fraction` of the way to its κ (or to its N:M pattern)."""
    records = []
    for name, target in targets.items():
        weight = params[name]
        if isinstance(target, tuple):
            n, m = target
            positions = pattern_positions(weight.detach().cpu(), group_keep(n, m, fraction), m)
        else:
            keep = max(1, round(weight.numel() - fraction * (weight.numel() - target)))
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
    return records


def run(config: RetrainSpec, job: JobContext, compress: CompressFn) -> Outcome:
    """Records of the whole state dict after the retraining `config` asks for."""
    lo, hi = job.span
    prune_cfg, tune_cfg, schedule = config.prune, config.finetune, config.prune_schedule
    total_epochs = max(
        1, (prune_cfg.epochs * len(schedule) if prune_cfg else 0) + (tune_cfg.epochs if tune_cfg else 0)
    )
    done = 0

    def on_epoch(stats: EpochStats) -> None:
        nonlocal done
        done += 1
        job.history.append(stats)
        err = (
            ""
            if stats.validation_error is None
            else f", validation error {100 * stats.validation_error:.2f}%"
        )
        job.progress(
            stats.stage,
            lo + (hi - lo) * 0.9 * done / total_epochs,
            f"epoch {stats.epoch}/{stats.epochs}: loss {stats.train_loss:.4f}{err}",
        )

    job.progress("evaluate", lo, "before compression")
    job.evaluate_before()
    lm = is_lm_job(job)  # a causal LM: its own loss on the token ids (retrain/lm.py)
    if lm and (prune_cfg is not None or tune_cfg is not None):
        train_set, trainer = lm_training(job)
        eval_set = None
    elif prune_cfg is not None or tune_cfg is not None:
        assert job.data is not None
        train_set, eval_set, trainer = job.data.train, job.data.choice_set, train_epochs

    if prune_cfg is not None:
        targets: dict[str, int | tuple[int, int]] = {
            **target_keeps(job.original, job.spec),
            **target_patterns(job.original, job.spec),
        }
        if not targets:
            raise SpecError("retrain.prune is set but no rule prunes any tensor")
        for i, fraction in enumerate(schedule, start=1):
            job.check_cancel("between pruning iterations")
            finetune(
                job.model,
                _pruned(dict(job.model.state_dict()), targets, fraction),
                train_set,
                prune_cfg.model_copy(update={"seed": prune_cfg.seed + i}),  # a new shuffle order each round
                eval_set=eval_set,
                device=job.device,
                on_epoch=on_epoch,
                should_cancel=job.should_cancel,
                stage=f"prune-retrain {i}/{len(schedule)}",
                trainer=trainer,
            )

    current = {k: v.detach().cpu() for k, v in job.model.state_dict().items()}
    state = {name: current[name] for name in job.original}
    at = lo + (hi - lo) * 0.9 * done / total_epochs
    records, metrics = compress(
        state, job.spec, should_cancel=job.should_cancel, span=(at, at + (hi - lo) * 0.1)
    )
    rules = {entry["name"]: entry.get("rule") for entry in metrics["tensors"]}

    if tune_cfg is not None:
        result = finetune(
            job.model,
            records,
            train_set,
            tune_cfg,
            eval_set=eval_set,
            device=job.device,
            on_epoch=on_epoch,
            should_cancel=job.should_cancel,
            stage="finetune",
            trainer=trainer,
        )
        records = result.records
    if lm:  # no deployment stage rebuilds an LM from its files: measured here on what the records store
        evaluate_records(job, records)
    return Outcome(
        records=records,
        rules=rules,
        seconds=metrics["timing"]["seconds"],
        training=job.monitored({"history": [s.to_dict() for s in job.history]}),
    )
