"""The L step: SGD on the data loss plus the LC penalty μ/2 Σ ||w - t||², t = Δ(Θ) + λ/μ.

Every trainable parameter moves (compressed or not); the penalty only pulls the compressed ones towards
their targets. As in the LC toolkit, each L step gets a fresh SGD optimizer with learning rate
lr · gamma^k (k = the LC step), constant within the step. The epochs run through the one training loop
(`training.loop.run_epoch`) with the penalty as its hook, mini-batches drawn by a seeded permutation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import TensorDataset

from compression_core.errors import SpecError
from compression_core.methods.lc.spec import LStepSpec
from compression_core.training.loop import EpochTotals, permuted_batches, run_epoch

__all__ = ["LStepStats", "l_step", "lc_penalty"]


@dataclass(frozen=True)
class LStepStats:
    lr: float
    epochs: int
    train_loss: float  # mean data loss over the last epoch
    penalty: float  # mean μ/2 Σ ||w - t||² over the last epoch
    train_accuracy: float  # over the last epoch, as the weights moved


def lc_penalty(
    params: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor], mu: float
) -> torch.Tensor:
    """μ/2 Σ ||w - t||² over the parameters that have a target."""
    total = sum(((params[name] - target) ** 2).sum() for name, target in targets.items())
    return 0.5 * mu * torch.as_tensor(total)


def _penalized_parameters(model: nn.Module, names: list[str]) -> dict[str, nn.Parameter]:
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    missing = [n for n in names if n not in params and n not in buffers]
    if missing:
        raise SpecError(f"LC: compressed tensors {missing} are not parameters or buffers of the model")
    return {n: params[n] for n in names if n in params}  # buffers are compressed but not trained


def l_step(
    model: nn.Module,
    targets: Mapping[str, torch.Tensor],
    mu: float,
    train_set: TensorDataset,
    config: LStepSpec,
    step: int,
    *,
    device: str | torch.device = "cpu",
    should_cancel: Callable[[], bool] | None = None,
) -> LStepStats:
    """Train `model` in place for `config.epochs` epochs on cross-entropy + the LC penalty at `mu`."""
    device = torch.device(device)
    model.to(device)
    penalized = _penalized_parameters(model, list(targets))
    targets = {n: targets[n].to(device, penalized[n].dtype) for n in penalized}
    lr = config.lr * config.gamma**step
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(
        params,
        lr=lr,
        momentum=config.momentum,
        nesterov=config.nesterov and config.momentum > 0,
        weight_decay=config.weight_decay,
    )
    n = len(train_set.tensors[1])
    batches = permuted_batches(
        train_set, config.batch_size, torch.Generator().manual_seed(config.seed + step)
    )
    totals = EpochTotals()
    for _epoch in range(config.epochs):  # the statistics are those of the last epoch
        totals = run_epoch(
            model,
            batches,
            optimizer,
            device=device,
            penalty=lambda: lc_penalty(penalized, targets, mu),
            should_cancel=should_cancel,
            stage="an LC L step",
        )
    return LStepStats(
        lr=lr,
        epochs=config.epochs,
        train_loss=totals.loss_sum / max(n, 1),
        penalty=totals.penalty_sum / max(totals.batches, 1),
        train_accuracy=totals.correct / max(n, 1),
    )
