"""The one training loop: every method that trains (retraining, the LC L step, soft weight-sharing,
distillation) runs its epochs through `run_epoch`.

Hooks say what differs: `loss_fn(outputs, inputs, labels)` (cross-entropy unless given: distillation's KD
loss), `penalty()` added to the loss for the backward pass but reported apart (the LC penalty, the SWS
prior), `after_step()` after each optimizer step (the SWS prior's clamp). Cancellation is checked every
`CANCEL_EVERY` batches, the same everywhere.

Ready for a GPU: the data set is moved to the device once (`permuted_batches(..., device=)`), each epoch's
permutation is drawn from a seeded CPU generator (deterministic on every device) and moved there, batches
are slices of the device tensors (no per-sample DataLoader indexing or collation), and the epoch's loss,
penalty and accuracy are summed on the device and read back once per epoch (no host sync per step).
`loader_batches` gives the exact order the seeded shuffling `DataLoader` it replaced gave (it draws the
same numbers from the generator), so results did not change with the faster loop.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from compression_core.errors import Cancelled, TrainingDiverged
from compression_core.spec.fields import OptimizerName, RetrainConfig

__all__ = [
    "CANCEL_EVERY",
    "EpochStats",
    "EpochTotals",
    "MONITORED",
    "loader_batches",
    "make_optimizer",
    "permuted_batches",
    "raise_if_diverged",
    "renamed_for_split",
    "run_epoch",
    "train_epochs",
    "with_split_names",
]

log = logging.getLogger(__name__)

CANCEL_EVERY = 50  # batches between cancellation checks (the first batch of an epoch is always checked)

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
EpochCallback = Callable[["EpochStats"], None]


MONITORED = ("validation_error", "validation_loss", "validation_samples")  # per-epoch/step history keys


def renamed_for_split(entry: dict[str, Any], split: str) -> dict[str, Any]:
    """A history entry whose `validation_*` keys are named for `split`, the one they were measured on."""
    return {(f"{split}_{k.split('_', 1)[1]}" if k in MONITORED else k): v for k, v in entry.items()}


def with_split_names(entry: dict[str, Any]) -> dict[str, Any]:
    """A saved history entry (checkpoint) from before the per-epoch errors were named for their split
    (they were `test_*`, though measured on validation), with today's names."""
    return {(f"validation_{k[5:]}" if f"validation_{k[5:]}" in MONITORED else k): v for k, v in entry.items()}


@dataclass
class EpochStats:
    epoch: int  # 1-based
    epochs: int
    lr: float
    train_loss: float
    train_accuracy: float
    validation_error: float | None = None  # on the split the caller monitors: validation (see MONITORED)
    validation_samples: int | None = None
    stage: str = "train"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class EpochTotals:
    """Sums over one epoch: data loss · batch size, penalty per batch, correct predictions, samples,
    batches."""

    loss_sum: float = 0.0
    penalty_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    batches: int = 0


def loader_batches(
    dataset: TensorDataset,
    batch_size: int,
    generator: torch.Generator,
    device: str | torch.device | None = None,
) -> Batches:
    """Shuffled mini-batches in the order `DataLoader(shuffle=True, generator=generator)` gives, sliced from
    the data tensors on `device` (see `permuted_batches`)."""
    return permuted_batches(dataset, batch_size, generator, device=device, loader_order=True)


class permuted_batches:  # noqa: N801 (used like the function above)
    """Shuffled mini-batches: the data tensors, moved to `device` once, indexed with a fresh permutation
    from `generator` per epoch. With `loader_order` the generator is consumed as torch's DataLoader with a
    RandomSampler consumes it (a base seed per epoch, the permutation, and one more permutation when the
    sampler runs out), so the batches are exactly the DataLoader's."""

    def __init__(
        self,
        dataset: TensorDataset,
        batch_size: int,
        generator: torch.Generator,
        *,
        device: str | torch.device | None = None,
        loader_order: bool = False,
    ):
        self.x, self.y = dataset.tensors[0], dataset.tensors[1]
        if device is not None:
            self.x, self.y = self.x.to(device), self.y.to(device)
        self.batch_size, self.generator, self.loader_order = batch_size, generator, loader_order

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.y)
        if self.loader_order:  # DataLoader's iterator draws its workers' base seed first
            torch.empty((), dtype=torch.int64).random_(generator=self.generator)
        order = torch.randperm(n, generator=self.generator).to(self.y.device, non_blocking=True)
        for start in range(0, n, self.batch_size):
            index = order[start : start + self.batch_size]
            yield self.x[index], self.y[index]
        if self.loader_order:  # RandomSampler draws the (empty) remainder permutation at its end
            torch.randperm(n, generator=self.generator)


def run_epoch(
    model: nn.Module,
    batches: Batches,
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device,
    loss_fn: LossFn | None = None,
    penalty: Callable[[], torch.Tensor] | None = None,
    after_step: Callable[[], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    stage: str = "train",
) -> EpochTotals:
    """One epoch of SGD-style training of `model` (in train mode) over `batches`. Sums stay on the device
    until the epoch ends: one host sync per epoch, not per step."""
    model.train()
    loss_sum = torch.zeros((), device=device)
    penalty_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = batches_done = 0
    for step, (x, y) in enumerate(batches):
        if should_cancel is not None and step % CANCEL_EVERY == 0 and should_cancel():
            raise Cancelled(f"cancelled during {stage}")
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)  # no-ops when already there
        out = model(x)
        loss = nn.functional.cross_entropy(out, y) if loss_fn is None else loss_fn(out, x, y)
        extra = penalty() if penalty is not None else None
        optimizer.zero_grad(set_to_none=True)
        (loss if extra is None else loss + extra).backward()
        optimizer.step()
        if after_step is not None:
            after_step()
        loss_sum += loss.detach() * len(y)
        if extra is not None:
            penalty_sum += extra.detach()
        correct += (out.detach().argmax(1) == y).sum()
        seen += len(y)
        batches_done += 1
    return EpochTotals(float(loss_sum), float(penalty_sum), int(correct), seen, batches_done)


def make_optimizer(params: list[nn.Parameter], config: RetrainConfig) -> torch.optim.Optimizer:
    if config.optimizer is OptimizerName.adam:
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params,
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov and config.momentum > 0,
        weight_decay=config.weight_decay,
    )


def raise_if_diverged(stats: EpochStats, config: RetrainConfig) -> None:
    """A NaN or infinite epoch loss stops the phase before its weights are handed on (`TrainingDiverged`)."""
    if not math.isfinite(stats.train_loss):
        raise TrainingDiverged(
            f"{stats.stage} epoch {stats.epoch}/{stats.epochs} diverged: training loss {stats.train_loss} at "
            f"lr {stats.lr:g} ({config.optimizer.value}); a smaller lr for this phase usually trains"
        )


def train_epochs(
    model: nn.Module,
    train_set: TensorDataset,
    config: RetrainConfig,
    *,
    eval_set: TensorDataset | None = None,
    device: str | torch.device = "cpu",
    on_epoch: EpochCallback | None = None,
    should_cancel: Callable[[], bool] | None = None,
    stage: str = "train",
    loss_fn: LossFn | None = None,
) -> list[EpochStats]:
    """Supervised training; the model's parametrizations define what moves. The loss is cross-entropy
    unless `loss_fn(outputs, inputs, labels)` is given (distillation passes its teacher-matching loss)."""
    from compression_core.evaluate import evaluate

    device = torch.device(device)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, config)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)
    batches = loader_batches(
        train_set, config.batch_size, torch.Generator().manual_seed(config.seed), device=device
    )
    history: list[EpochStats] = []
    for epoch in range(1, config.epochs + 1):
        lr = optimizer.param_groups[0]["lr"]
        totals = run_epoch(
            model,
            batches,
            optimizer,
            device=device,
            loss_fn=loss_fn,
            should_cancel=should_cancel,
            stage=stage,
        )
        scheduler.step()
        seen = max(totals.seen, 1)
        stats = EpochStats(
            epoch, config.epochs, lr, totals.loss_sum / seen, totals.correct / seen, stage=stage
        )
        raise_if_diverged(stats, config)
        if eval_set is not None:
            ev = evaluate(model, eval_set, device=device, timing=False)
            stats.validation_error, stats.validation_samples = ev.error, ev.samples
        log.info(
            "%s epoch %d/%d: loss %.4f, train acc %.4f, validation error %s",
            stage,
            epoch,
            config.epochs,
            stats.train_loss,
            stats.train_accuracy,
            stats.validation_error,
        )
        history.append(stats)
        if on_epoch is not None:
            on_epoch(stats)
    return history
