"""Knowledge distillation (Hinton, Vinyals & Dean 2015): train a small student on a teacher's soft outputs.

loss = alpha · T² · KL(p_t ‖ p_s) + (1 − alpha) · CE(z_s, y), with p = softmax(z / T); the T² keeps the soft
term's gradients on the scale of the hard term's as T changes. `distill` is the library entry point (its
epochs run through the one training loop with the KD loss as hook); with a spec's `distill` field the job
distills the uploaded student before the normal rules compress it (or store it dense when there are none).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

from compression_core.errors import InputError
from compression_core.methods.distill.spec import DistillSpec
from compression_core.sources import open_source
from compression_core.training.loop import EpochStats, train_epochs

__all__ = ["DistillSpec", "distill", "kd_loss", "load_teacher"]

log = logging.getLogger(__name__)


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """alpha · T² · KL(softmax(z_t/T) ‖ softmax(z_s/T)) (mean over the batch) + (1 − alpha) · CE(z_s, y)."""
    soft = nn.functional.kl_div(
        nn.functional.log_softmax(student_logits / temperature, dim=1),
        nn.functional.log_softmax(teacher_logits / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    hard = nn.functional.cross_entropy(student_logits, targets)
    return alpha * temperature**2 * soft + (1.0 - alpha) * hard


def load_teacher(spec: DistillSpec, path: str | Path) -> nn.Module:
    """The teacher: its architecture from the spec, its weights from the upload through the safe loader
    (`.safetensors`, or `.pth` with `weights_only=True`); InputError when they do not fit."""
    try:
        with open_source(path, spec.teacher) as source:
            teacher = source.module()
    except InputError as error:
        raise InputError(f"teacher: {error}") from None
    if teacher is None:
        raise InputError(f"teacher: a {source.kind} input cannot be built into a module")
    return teacher


def distill(
    student: nn.Module,
    teacher: nn.Module,
    train_set: TensorDataset,
    config: DistillSpec,
    *,
    eval_set: TensorDataset | None = None,
    device: str | torch.device = "cpu",
    on_epoch: Callable[[EpochStats], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> list[EpochStats]:
    """Train `student` in place on the KD loss; the teacher is frozen in eval mode. Returns the history."""
    device = torch.device(device)
    teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)

    def loss_fn(out: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = teacher(x)
        return kd_loss(out, target, y, temperature=config.temperature, alpha=config.alpha)

    torch.manual_seed(config.seed)
    return train_epochs(
        student,
        train_set,
        config,
        eval_set=eval_set,
        device=device,
        on_epoch=on_epoch,
        should_cancel=should_cancel,
        stage="distill",
        loss_fn=loss_fn,
    )
