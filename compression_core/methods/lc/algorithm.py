"""The LC loop: direct compression to start, then for μ in the schedule: L step, C step, multipliers.

`run_lc` is the library entry point (model and data in, records and history out); `run.py` wires it into
the pipeline. Step 0 of the history is the direct compression Π(w_reference) (low-rank rank selection at
μ0, since μ = 0 would select rank 0), so every run also reports the data-free baseline it started from.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from compression_core.errors import Cancelled, InputError, SpecError, TrainingDiverged
from compression_core.evaluate import evaluate
from compression_core.methods.lc.checkpoint import LCCheckpoint, fingerprint
from compression_core.methods.lc.cstep import c_step, decompressed
from compression_core.methods.lc.lstep import LStepStats, l_step
from compression_core.methods.lc.spec import LCSpec
from compression_core.records import TensorRecord
from compression_core.select import Selection, select_tensors
from compression_core.spec.model import SpecBase as Spec
from compression_core.training.loop import with_split_names

__all__ = ["LCResult", "LCStepStats", "compressed_weights", "run_lc", "structure_of"]

log = logging.getLogger(__name__)


@dataclass
class LCStepStats:
    step: int  # 0 = direct compression, then 1..steps
    mu: float
    lr: float | None = None  # the L step's learning rate (None at step 0)
    train_loss: float | None = None  # mean data loss of w over the L step's last epoch
    penalty: float | None = None  # mean μ/2 ||w - Δ(Θ) - λ/μ||² over that epoch
    train_accuracy: float | None = None
    constraint_gap: float = 0.0  # ||w - Δ(Θ)|| / ||w|| over the compressed tensors after the C step
    validation_error: float | None = None  # of the compressed model Δ(Θ), every eval_every steps
    validation_loss: float | None = None
    validation_samples: int | None = None
    structure: dict[str, Any] = field(default_factory=dict)  # per tensor: kept / codebook size / rank
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class LCResult:
    records: dict[str, TensorRecord]  # Θ of every compressed tensor (the last C step)
    history: list[LCStepStats]
    selections: dict[str, Selection]
    resumed_at: int | None = None  # the first LC step this call ran, when it resumed from a checkpoint


def structure_of(record: TensorRecord) -> dict[str, int]:
    """What constrains a record: kept weights, codebook entries, rank."""
    out: dict[str, int] = {}
    if record.positions is not None:
        out["kept"] = int(record.positions.numel())
    if record.codebook is not None:
        out["codebook"] = int(record.codebook.numel())
    if record.factors is not None:
        out["rank"] = int(record.factors[0].shape[1])
    return out


@contextlib.contextmanager
def compressed_weights(model: nn.Module, tensors: Mapping[str, torch.Tensor]) -> Iterator[nn.Module]:
    """The model with the named parameters/buffers replaced by `tensors`, restored on exit."""
    state = model.state_dict()
    saved = {name: state[name].detach().clone() for name in tensors}
    try:
        with torch.no_grad():
            for name, value in tensors.items():
                state[name].copy_(value)
        yield model
    finally:
        with torch.no_grad():
            for name, value in saved.items():
                state[name].copy_(value)


def _relative_gap(weights: Mapping[str, torch.Tensor], deltas: Mapping[str, torch.Tensor]) -> float:
    num = sum(float(((weights[n].detach().double() - deltas[n].double()) ** 2).sum()) for n in deltas)
    den = sum(float((weights[n].detach().double() ** 2).sum()) for n in deltas)
    return math.sqrt(num / den) if den > 0 else 0.0


def _check_reference(weights: Mapping[str, torch.Tensor]) -> None:
    bad = [n for n, w in weights.items() if not bool(torch.isfinite(w).all())]
    if bad:
        raise InputError(f"LC: tensors {bad} contain NaN or infinity in the uploaded model")


def _check_l_step(weights: Mapping[str, torch.Tensor], stats: LStepStats, step: int, steps: int) -> None:
    """A NaN loss or non-finite weight after an L step fails the job naming the step, μ-step lr and loss
    (`TrainingDiverged`), before the C step would compress NaN."""
    bad = [n for n, w in weights.items() if not bool(torch.isfinite(w).all())]
    if bad or not math.isfinite(stats.train_loss):
        tensors = f", tensors {bad} not finite" if bad else ""
        raise TrainingDiverged(
            f"LC L step {step}/{steps} diverged: training loss {stats.train_loss} at lr {stats.lr:g}"
            f"{tensors}; a smaller l_step.lr usually trains"
        )


def run_lc(
    model: nn.Module,
    spec: Spec,
    train_set: TensorDataset,
    *,
    eval_set: TensorDataset | None = None,
    device: str | torch.device = "cpu",
    on_step: Callable[[LCStepStats], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    checkpoint_dir: str | Path | None = None,
) -> LCResult:
    """Compress `model` (trained, in place) with the LC algorithm configured by `spec.lc`.

    On return the model holds the compressed weights Δ(Θ) for the selected tensors and the trained values
    of everything else (biases, ...). With `checkpoint_dir` the state after every finished LC step but the
    last is saved there, and a run that finds a checkpoint of the same spec and weights resumes at the
    step after it (see checkpoint.py).
    """
    lc: LCSpec | None = spec.method("lc")
    if lc is None:
        raise SpecError("run_lc needs a spec with an `lc` field")
    schedule = lc.mu_schedule()
    model.to(device)
    selections = select_tensors(model.state_dict(), spec)
    if not selections:
        raise SpecError("LC: the spec's rules select no tensor of the model")

    def current() -> dict[str, torch.Tensor]:
        state = model.state_dict()
        return {name: state[name].detach().clone() for name in selections}

    def finish_stats(
        stats: LCStepStats, records: Mapping[str, TensorRecord], evaluate_now: bool, started: float
    ) -> None:
        deltas = decompressed(records, device)
        stats.constraint_gap = _relative_gap(current(), deltas)
        stats.structure = {name: structure_of(r) for name, r in records.items()}
        if evaluate_now and eval_set is not None:
            with compressed_weights(model, deltas):
                ev = evaluate(model, eval_set, device=device, timing=False)
            stats.validation_error, stats.validation_loss, stats.validation_samples = (
                ev.error,
                ev.loss,
                ev.samples,
            )
        stats.seconds = time.perf_counter() - started
        history.append(stats)
        log.info(
            "LC step %d: mu %.3g, loss %s, penalty %s, gap %.4f, validation error %s",
            stats.step,
            stats.mu,
            stats.train_loss,
            stats.penalty,
            stats.constraint_gap,
            stats.validation_error,
        )
        if on_step is not None:
            on_step(stats)

    history: list[LCStepStats] = []
    checkpoint = saved = None
    if checkpoint_dir is not None:
        key = spec.model_dump_json()  # rules, method settings, model and data (its validation split)
        checkpoint = LCCheckpoint(checkpoint_dir, fingerprint(key, model.state_dict()))
        saved = checkpoint.load()
        if saved is not None and not 1 <= saved.step < len(schedule):
            saved = None
    lambdas: dict[str, torch.Tensor] | None
    if saved is None:
        started = time.perf_counter()
        weights = current()
        _check_reference(weights)
        records = c_step(weights, selections, schedule[0], device=device)  # direct compression Π(w)
        lambdas = {name: torch.zeros_like(w) for name, w in weights.items()} if lc.multipliers else None
        finish_stats(LCStepStats(step=0, mu=schedule[0]), records, True, started)
        deltas = decompressed(records, device)
        first = 0
    else:  # resume: the state after step `saved.step`, exactly as that run left it
        model.load_state_dict(saved.model_state)
        history = [LCStepStats(**with_split_names(h)) for h in saved.history]
        deltas = {n: t.to(device) for n, t in saved.deltas.items()}
        lambdas = {n: t.to(device) for n, t in saved.lambdas.items()} if saved.lambdas is not None else None
        first = saved.step
        log.info("LC: resuming at step %d of %d from %s", first + 1, len(schedule), checkpoint_dir)

    for k, mu in enumerate(schedule):
        if k < first:
            continue
        if should_cancel is not None and should_cancel():
            raise Cancelled(f"cancelled before LC step {k + 1}")
        started = time.perf_counter()
        targets = deltas if lambdas is None else {n: deltas[n] + lambdas[n] / mu for n in deltas}
        lstats = l_step(
            model, targets, mu, train_set, lc.l_step, k, device=device, should_cancel=should_cancel
        )
        weights = current()
        _check_l_step(weights, lstats, k + 1, len(schedule))
        records = c_step(weights, selections, mu, lambdas=lambdas, device=device)
        deltas = decompressed(records, device)
        if lambdas is not None:
            lambdas = {n: lambdas[n] - mu * (weights[n] - deltas[n]) for n in lambdas}
        last = k == len(schedule) - 1
        stats = LCStepStats(
            step=k + 1,
            mu=mu,
            lr=lstats.lr,
            train_loss=lstats.train_loss,
            penalty=lstats.penalty,
            train_accuracy=lstats.train_accuracy,
        )
        finish_stats(stats, records, last or (k + 1) % lc.eval_every == 0, started)
        if checkpoint is not None and not last:
            checkpoint.save(k + 1, model.state_dict(), deltas, lambdas, [h.to_dict() for h in history])

    with torch.no_grad():  # the result: w = Δ(Θ) on the compressed tensors
        state = model.state_dict()
        for name, value in deltas.items():
            state[name].copy_(value)
    return LCResult(
        records=records,
        history=history,
        selections=selections,
        resumed_at=None if saved is None else first + 1,
    )
