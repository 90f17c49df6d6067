"""The one training loop: every method that trains (retraining, the LC L step, soft weight-sharing,
distillation) runs its epochs through `run_epoch`.

Hooks say what differs: `loss_fn(outputs, inputs, labels)` (cross-entropy unless given: distillation's KD
loss), `penalty()` added to the loss for the backward pass but reported apart (the LC penalty, the SWS
prior), `after_step()` after each optimizer step (the SWS prior's clamp). Cancellation is checked every
`CANCEL_EVERY` batches, the same everywhere. Batches come from a seeded shuffling `DataLoader`
(`loader_batches`) or from indexing the data tensors with a seeded permutation (`permuted_batches`, no
per-sample overhead); both are deterministic for a seed.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from compression_core.errors import Cancelled
from compression_core.spec.fields import OptimizerName, RetrainConfig

__all__ = [
    "CANCEL_EVERY",
    "EpochStats",
    "EpochTotals",
    "loader_batches",
    "make_optimizer",
    "permuted_batches",
    "run_epoch",
    "train_epochs",
]

log = logging.getLogger(__name__)

CANCEL_EVERY = 50  # batches between cancellation checks (the first batch of an epoch is always checked)

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
EpochCallback = Callable[["EpochStats"], None]


@dataclass
class EpochStats:
    epoch: int  # 1-based
    epochs: int
    lr: float
    train_loss: float
    train_accuracy: float
    test_error: float | None = None
    test_samples: int | None = None
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


def loader_batches(dataset: TensorDataset, batch_size: int, generator: torch.Generator) -> Batches:
    """Shuffled mini-batches through a DataLoader drawing its order from `generator` each epoch."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator)


class permuted_batches:  # noqa: N801 (used like the function above)
    """Shuffled mini-batches: the data tensors indexed with a fresh permutation from `generator` per epoch."""

    def __init__(self, dataset: TensorDataset, batch_size: int, generator: torch.Generator):
        self.x, self.y = dataset.tensors[0], dataset.tensors[1]
        self.batch_size, self.generator = batch_size, generator

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.y)
        order = torch.randperm(n, generator=self.generator)
        for start in range(0, n, self.batch_size):
            index = order[start : start + self.batch_size]
            yield self.x[index], self.y[index]


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
    """One epoch of SGD-style training of `model` (in train mode) over `batches`."""
    model.train()
    totals = EpochTotals()
    for step, (x, y) in enumerate(batches):
        if should_cancel is not None and step % CANCEL_EVERY == 0 and should_cancel():
            raise Cancelled(f"cancelled during {stage}")
        x, y = x.to(device), y.to(device)
        out = model(x)
        loss = nn.functional.cross_entropy(out, y) if loss_fn is None else loss_fn(out, x, y)
        extra = penalty() if penalty is not None else None
        optimizer.zero_grad(set_to_none=True)
        (loss if extra is None else loss + extra).backward()
        optimizer.step()
        if after_step is not None:
            after_step()
        totals.loss_sum += loss.item() * len(y)
        if extra is not None:
            totals.penalty_sum += extra.item()
        totals.correct += int((out.argmax(1) == y).sum())
        totals.seen += len(y)
        totals.batches += 1
    return totals


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
    batches = loader_batches(train_set, config.batch_size, torch.Generator().manual_seed(config.seed))
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
        if eval_set is not None:
            ev = evaluate(model, eval_set, device=device, timing=False)
            stats.test_error, stats.test_samples = ev.error, ev.samples
        log.info(
            "%s epoch %d/%d: loss %.4f, train acc %.4f, test error %s",
            stage,
            epoch,
            config.epochs,
            stats.train_loss,
            stats.train_accuracy,
            stats.test_error,
        )
        history.append(stats)
        if on_epoch is not None:
            on_epoch(stats)
    return history
