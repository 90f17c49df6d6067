"""The L step: SGD on the data loss plus the LC penalty μ/2 Σ ||w - t||², t = Δ(Θ) + λ/μ.

Every trainable parameter moves (compressed or not); the penalty only pulls the compressed ones towards
their targets. As in the LC toolkit, each L step gets a fresh SGD optimizer with learning rate
lr · gamma^k (k = the LC step), constant within the step. Mini-batches are drawn by indexing the data
tensors with a seeded permutation (no per-sample DataLoader overhead).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import TensorDataset

from compression_core.errors import Cancelled, SpecError
from compression_core.lc.spec import LStepSpec

__all__ = ["LStepStats", "l_step", "lc_penalty"]

CANCEL_CHECK_BATCHES = 50


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
    x_all, y_all = train_set.tensors[0], train_set.tensors[1]
    n = len(y_all)
    generator = torch.Generator().manual_seed(config.seed + step)
    model.train()
    loss_sum = penalty_sum = 0.0
    correct = batches = 0
    for _epoch in range(config.epochs):
        loss_sum = penalty_sum = 0.0
        correct = batches = 0
        order = torch.randperm(n, generator=generator)
        for b, start in enumerate(range(0, n, config.batch_size)):
            if should_cancel is not None and b % CANCEL_CHECK_BATCHES == 0 and should_cancel():
                raise Cancelled("cancelled during an LC L step")
            index = order[start : start + config.batch_size]
            x, y = x_all[index].to(device), y_all[index].to(device)
            out = model(x)
            loss = nn.functional.cross_entropy(out, y)
            penalty = lc_penalty(penalized, targets, mu)
            optimizer.zero_grad(set_to_none=True)
            (loss + penalty).backward()
            optimizer.step()
            loss_sum += loss.item() * len(y)
            penalty_sum += penalty.item()
            correct += int((out.argmax(1) == y).sum())
            batches += 1
    return LStepStats(
        lr=lr,
        epochs=config.epochs,
        train_loss=loss_sum / max(n, 1),
        penalty=penalty_sum / max(batches, 1),
        train_accuracy=correct / max(n, 1),
    )
