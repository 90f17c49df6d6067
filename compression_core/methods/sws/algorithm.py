"""Soft weight-sharing: retrain with the mixture prior, merge close components, quantize to their means.

`run_sws` is the library entry point (model and data in, records and history out; its epochs run through
the one training loop with the prior as penalty); `run.py` wires it into the pipeline. Each selected tensor
becomes a prune + codebook record: the positions of its non-zero weights, a codebook of the (merged)
component means it uses and one index per kept weight, so the `.bin` format and the metrics apply unchanged.
Weights taken by the zero component are exact zeros.

With `checkpoint_dir` (the job's folder) the state after every finished epoch goes to
`sws-checkpoint.safetensors` there (compression_core/training/checkpoint.py): the model's state dict, the
mixture's parameters (means, log-precisions, mixing logits), Adam's moments and step counts, the batch
generator's and torch's RNG states and the history. A run that finds a checkpoint of the same spec and
weights continues at the next epoch and draws the same mini-batches an uninterrupted run would.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from compression_core.errors import SpecError, TrainingDiverged
from compression_core.evaluate import evaluate
from compression_core.methods.sws.prior import Mixture, MixturePrior, assign, merge_components
from compression_core.methods.sws.spec import SWSSpec
from compression_core.records import TensorRecord
from compression_core.select import matches
from compression_core.spec.base import Selector
from compression_core.training.checkpoint import (
    RunCheckpoint,
    SavedRun,
    fingerprint,
    load_optimizer_state,
    optimizer_state,
)
from compression_core.training.loop import loader_batches, run_epoch, with_split_names

__all__ = [
    "CHECKPOINT_NAME",
    "SWSEpochStats",
    "SWSResult",
    "quantize_to_mixture",
    "run_sws",
    "sws_tensor_names",
]

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "sws-checkpoint.safetensors"


@dataclass
class SWSEpochStats:
    epoch: int
    epochs: int
    train_loss: float  # mean cross-entropy over the epoch
    prior_loss: float  # mean tau/N · (−log p(w) − log p(λ)) over the epoch
    train_accuracy: float
    validation_error: float | None = None  # of the retrained (not yet quantized) model
    validation_samples: int | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class SWSResult:
    records: dict[str, TensorRecord]
    history: list[SWSEpochStats]
    mixture: Mixture  # after merging
    learned: Mixture  # as trained, before merging
    summary: dict[str, Any] = field(default_factory=dict)
    resumed_at: int | None = None  # the first epoch this call ran, when it resumed from a checkpoint


def sws_tensor_names(state_dict: Mapping[str, torch.Tensor], spec: SWSSpec) -> list[str]:
    """The tensors the prior covers: float tensors matching `select` (biases/norms only when named)."""
    selector = Selector(name=spec.patterns)
    return [name for name, tensor in state_dict.items() if matches(selector, name, tensor)]


def quantize_to_mixture(name: str, tensor: torch.Tensor, mixture: Mixture) -> TensorRecord:
    """Each weight set to the mean of its most responsible component, stored as positions + codebook."""
    component = assign(tensor, mixture)
    means = torch.from_numpy(mixture.means).float()
    values = means[component]
    positions = torch.nonzero(values != 0).squeeze(1)
    used = torch.unique(component[positions])
    codebook = means[used]
    indices = torch.searchsorted(used, component[positions])
    record = TensorRecord(
        name=name,
        shape=tuple(tensor.shape),
        dtype=tensor.dtype,
        positions=positions,
        method="sws",
        stats={"kept": int(positions.numel()), "codebook_size": int(used.numel())},
    )
    if positions.numel() > 0:
        record.codebook, record.indices = codebook, indices
    else:
        record.values = torch.zeros(0, dtype=torch.float32)
    return record


def _check_finite(prior: MixturePrior, weights: list[torch.Tensor], epoch: int) -> None:
    tensors = [*weights, *prior.parameters()]
    if not all(bool(torch.isfinite(t).all()) for t in tensors):
        raise TrainingDiverged(f"SWS: training diverged in epoch {epoch}; lower sws.lr or sws.tau")


def run_sws(
    model: nn.Module,
    spec: SWSSpec,
    train_set: TensorDataset,
    *,
    eval_set: TensorDataset | None = None,
    device: str | torch.device = "cpu",
    on_epoch: Callable[[SWSEpochStats], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_key: str | None = None,
    on_resume: Callable[[int], None] | None = None,
) -> SWSResult:
    """Retrain `model` (trained, in place) with the mixture prior and quantize the selected tensors.

    On return the model holds the quantized weights on the selected tensors and the retrained values of
    everything else (biases, ...). With `checkpoint_dir` the state after every finished epoch is saved
    there, and a run that finds a checkpoint of the same `checkpoint_key` (the whole job spec; this SWS
    spec when None) and starting weights resumes at the epoch after it, calling `on_resume(epoch)` first.
    """
    device = torch.device(device)
    model.to(device)
    names = sws_tensor_names(model.state_dict(), spec)
    if not names:
        raise SpecError(f"sws: select {spec.patterns} matches no weight tensor of the model")
    params = dict(model.named_parameters())
    missing = [n for n in names if n not in params]
    if missing:
        raise SpecError(f"sws: {missing} are buffers, not trainable parameters")
    weights: list[torch.Tensor] = [params[n] for n in names]
    torch.manual_seed(spec.seed)
    prior = MixturePrior(weights, spec).to(device)
    ids = {id(w) for w in weights}
    others = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    optimizer = torch.optim.Adam(
        [
            {"params": weights + others, "lr": spec.lr},
            {"params": [prior.means], "lr": spec.lr_means},
            {"params": [prior.log_precisions], "lr": spec.lr_log_precisions},
            {"params": [prior.rhos], "lr": spec.lr_mixing},
        ]
    )
    scale = spec.tau / len(train_set)
    generator = torch.Generator().manual_seed(spec.seed)  # the batch order; saved with each checkpoint
    batches = loader_batches(train_set, spec.batch_size, generator, device=device)
    history: list[SWSEpochStats] = []
    checkpoint: RunCheckpoint | None = None
    first = 1
    if checkpoint_dir is not None:
        key = checkpoint_key if checkpoint_key is not None else spec.model_dump_json()
        checkpoint = RunCheckpoint(
            checkpoint_dir, CHECKPOINT_NAME, fingerprint(key, model.state_dict()), what="SWS"
        )
        saved = checkpoint.load()
        if saved is not None and 1 <= saved.step <= spec.epochs:
            history = _restore(saved, model, prior, optimizer, generator)
            first = saved.step + 1
            log.info("SWS: resuming at epoch %d of %d from %s", first, spec.epochs, checkpoint_dir)
            if on_resume is not None:
                on_resume(first)
    for epoch in range(first, spec.epochs + 1):
        started = time.perf_counter()
        totals = run_epoch(
            model,
            batches,
            optimizer,
            device=device,
            penalty=lambda: scale * prior(weights),
            after_step=prior.clamp_,
            should_cancel=should_cancel,
            stage=f"SWS epoch {epoch}",
        )
        _check_finite(prior, weights, epoch)
        seen = max(totals.seen, 1)
        stats = SWSEpochStats(
            epoch,
            spec.epochs,
            totals.loss_sum / seen,
            totals.penalty_sum / max(totals.batches, 1),
            totals.correct / seen,
        )
        if eval_set is not None and (epoch % spec.eval_every == 0 or epoch == spec.epochs):
            ev = evaluate(model, eval_set, device=device, timing=False)
            stats.validation_error, stats.validation_samples = ev.error, ev.samples
        stats.seconds = time.perf_counter() - started
        log.info(
            "SWS epoch %d/%d: loss %.4f, prior %.4f, validation error %s",
            epoch,
            spec.epochs,
            stats.train_loss,
            stats.prior_loss,
            stats.validation_error,
        )
        history.append(stats)
        if checkpoint is not None:
            _save(checkpoint, epoch, model, prior, optimizer, generator, history)
        if on_epoch is not None:
            on_epoch(stats)

    learned = prior.mixture()
    mixture = merge_components(learned, spec.merge_kl)
    records = {
        n: quantize_to_mixture(n, p.detach().cpu(), mixture) for n, p in zip(names, weights, strict=True)
    }
    with torch.no_grad():
        for name, weight in zip(names, weights, strict=True):
            weight.copy_(records[name].reconstruct().to(weight.device, weight.dtype))
    total = sum(r.numel for r in records.values())
    kept = sum(int(r.positions.numel()) for r in records.values() if r.positions is not None)
    used = sorted({float(v) for r in records.values() if r.codebook is not None for v in r.codebook.tolist()})
    summary = {
        "tensors": names,
        "weights": total,
        "nonzero": kept,
        "sparsity": 1.0 - kept / total if total else 0.0,
        "components_learned": len(learned),
        "components_after_merge": len(mixture),
        "nonzero_values_used": len(used),
        "means": used,
        "sigmas": [math.exp(-0.5 * g) for g in mixture.log_precisions.tolist()],
        "pis": [math.exp(p) for p in mixture.log_pis.tolist()],
    }
    return SWSResult(
        records=records,
        history=history,
        mixture=mixture,
        learned=learned,
        summary=summary,
        resumed_at=first if first > 1 else None,
    )


def _save(
    checkpoint: RunCheckpoint,
    epoch: int,
    model: nn.Module,
    prior: MixturePrior,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    history: list[SWSEpochStats],
) -> None:
    moments, optimizer_rest = optimizer_state(optimizer)
    checkpoint.save(
        epoch,
        {
            "model": model.state_dict(),
            "prior": prior.state_dict(),  # means, log_precisions, rhos (the mixing logits)
            "optimizer": moments,
            "rng": _rng_states(generator),
        },
        {"optimizer": optimizer_rest, "history": json.dumps([h.to_dict() for h in history])},
    )


def _rng_states(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The batch order's generator and torch's global RNGs (dropout draws from them)."""
    states = {"batches": generator.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def _restore(
    saved: SavedRun,
    model: nn.Module,
    prior: MixturePrior,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> list[SWSEpochStats]:
    """Put the state after epoch `saved.step` back in place; the history up to it."""
    model.load_state_dict(saved.groups["model"])
    prior.load_state_dict(saved.groups["prior"])
    load_optimizer_state(optimizer, saved.groups.get("optimizer", {}), saved.meta["optimizer"])
    generator.set_state(saved.groups["rng"]["batches"])
    torch.set_rng_state(saved.groups["rng"]["torch"])
    if "cuda" in saved.groups["rng"] and torch.cuda.is_available():  # dropout on the GPU draws from it
        torch.cuda.set_rng_state(saved.groups["rng"]["cuda"])
    return [SWSEpochStats(**with_split_names(h)) for h in json.loads(saved.meta["history"])]
