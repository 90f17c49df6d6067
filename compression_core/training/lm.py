"""Training a causal language model with its own loss, on token-id rows (a Hugging Face LM's `retrain` and
`distill`, issue 23).

- `causal_lm_loss`: the mean negative log-likelihood of every token after the first of each row (the loss
  transformers computes with `labels = input_ids`);
- `kd_lm_loss`: distillation to a teacher's logits, per token: alpha · T² · KL(softmax(z_t/T) ‖
  softmax(z_s/T)) + (1 − alpha) · the causal LM loss (Hinton et al. 2015, applied at every position);
- `train_lm`: epochs over shuffled batches of rows with the optimizer and schedule of `RetrainConfig`, the
  validation rows' perplexity after each epoch. It has `train_epochs`' signature, so `finetune` (structure
  held through parametrizations) and iterative pruning train an LM through it unchanged.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import TensorDataset

from compression_core.errors import Cancelled
from compression_core.spec.fields import RetrainConfig
from compression_core.training.loop import EpochCallback, EpochStats, make_optimizer, raise_if_diverged

__all__ = ["LMEpochStats", "LMLoss", "causal_lm_loss", "kd_lm_loss", "lm_trainer", "train_lm"]

log = logging.getLogger(__name__)

LMLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (student logits, ids) -> scalar loss


@dataclasses.dataclass
class LMEpochStats(EpochStats):
    """An epoch of LM training: `train_accuracy` is next-token accuracy; validation in perplexity."""

    validation_perplexity: float | None = None
    validation_tokens: int | None = None


def causal_lm_loss(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1)
    )


def kd_lm_loss(teacher: nn.Module, *, temperature: float, alpha: float) -> LMLoss:
    """The distillation loss to `teacher`'s logits on the same ids (the teacher frozen, in eval mode)."""

    def loss(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = teacher(input_ids=ids).logits.float()
        vocab = logits.shape[-1]
        soft = nn.functional.kl_div(
            nn.functional.log_softmax(logits.float().reshape(-1, vocab) / temperature, dim=-1),
            nn.functional.log_softmax(target.reshape(-1, vocab) / temperature, dim=-1),
            reduction="batchmean",  # the mean over tokens
            log_target=True,
        )
        return alpha * temperature**2 * soft + (1.0 - alpha) * causal_lm_loss(logits, ids)

    return loss


@torch.no_grad()
def _validation(model: nn.Module, rows: torch.Tensor, device: torch.device, batch: int) -> tuple[float, int]:
    model.eval()
    total, count = 0.0, 0
    for start in range(0, rows.shape[0], batch):
        ids = rows[start : start + batch].to(device)
        logits = model(input_ids=ids).logits
        total += float(causal_lm_loss(logits, ids)) * ids[:, 1:].numel()
        count += ids[:, 1:].numel()
    return math.exp(total / max(count, 1)), count


def train_lm(
    model: nn.Module,
    train_set: TensorDataset,
    config: RetrainConfig,
    *,
    eval_set: TensorDataset | None = None,
    device: str | torch.device = "cpu",
    on_epoch: EpochCallback | None = None,
    should_cancel: Callable[[], bool] | None = None,
    stage: str = "train",
    loss: LMLoss = causal_lm_loss,
    validation: torch.Tensor | None = None,
) -> list[EpochStats]:
    """`config.epochs` epochs of `loss` over `train_set`'s token rows (its first tensor), in batches of
    `config.batch_size` shuffled with `config.seed`; `validation` rows are measured after each epoch
    (`eval_set`, a classification set, is not used)."""
    device = torch.device(device)
    model.to(device)
    rows = train_set.tensors[0]
    optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], config)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)
    generator = torch.Generator().manual_seed(config.seed)
    history: list[EpochStats] = []
    for epoch in range(1, config.epochs + 1):
        lr = optimizer.param_groups[0]["lr"]
        model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        order = torch.randperm(rows.shape[0], generator=generator)
        for step, start in enumerate(range(0, rows.shape[0], config.batch_size)):
            if should_cancel is not None and step % 8 == 0 and should_cancel():
                raise Cancelled(f"cancelled during {stage}")
            ids = rows[order[start : start + config.batch_size]].to(device)
            logits = model(input_ids=ids).logits
            value = loss(logits, ids)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
            tokens = ids[:, 1:].numel()
            loss_sum += float(value.detach()) * tokens
            correct += int((logits[:, :-1].detach().argmax(-1) == ids[:, 1:]).sum())
            seen += tokens
        scheduler.step()
        stats = LMEpochStats(
            epoch, config.epochs, lr, loss_sum / max(seen, 1), correct / max(seen, 1), stage=stage
        )
        raise_if_diverged(stats, config)
        if validation is not None:
            stats.validation_perplexity, stats.validation_tokens = _validation(
                model, validation, device, config.batch_size
            )
        log.info(
            "%s epoch %d/%d: loss %.4f, validation perplexity %s",
            stage,
            epoch,
            config.epochs,
            stats.train_loss,
            stats.validation_perplexity,
        )
        history.append(stats)
        if on_epoch is not None:
            on_epoch(stats)
    model.eval()
    return history


def lm_trainer(loss: LMLoss, validation: torch.Tensor | None) -> Callable[..., list[EpochStats]]:
    """`train_lm` with its loss and validation rows bound: a drop-in for `train_epochs` (`finetune`)."""

    def train(*args: object, **kwargs: object) -> list[EpochStats]:
        return train_lm(*args, loss=loss, validation=validation, **kwargs)  # type: ignore[arg-type]

    return train
