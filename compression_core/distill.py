"""Knowledge distillation (Hinton, Vinyals & Dean 2015): train a small student on a teacher's soft outputs.

loss = alpha · T² · KL(p_t ‖ p_s) + (1 − alpha) · CE(z_s, y), with p = softmax(z / T); the T² keeps the soft
term's gradients on the scale of the hard term's as T changes. `distill` is the library entry point; with a
spec's `distill` field the data-aware job distills the uploaded student before the normal rules compress it
(or store it dense when there are none).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from compression_core.distill_spec import DistillSpec
from compression_core.errors import InputError, SpecError
from compression_core.finetune import EpochStats, train_epochs
from compression_core.io import load_state_dict
from compression_core.models import build_model, load_into

if TYPE_CHECKING:
    from compression_core.data_aware import DataAwareJob

__all__ = ["DistillSpec", "distill", "kd_loss", "load_teacher", "run_distill"]

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
        return load_into(build_model(spec.teacher), load_state_dict(path))
    except InputError as error:
        raise InputError(f"teacher: {error}") from None


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


def run_distill(
    job: DataAwareJob,
    teacher_path: Path | None,
    *,
    progress: Callable[[str, float, str], None],
    should_cancel: Callable[[], bool] | None = None,
    span: tuple[float, float] = (0.0, 1.0),
) -> dict[str, Any]:
    """The pipeline hook: distill `job.model` from the uploaded teacher; returns the `distill` metrics.

    Afterwards the job's reference weights (`job.original`, what `rel_error` is measured against) are the
    distilled student, so the compression metrics describe the rules' compression only.
    """
    from compression_core.evaluate import evaluate

    config, data = job.spec.distill, job.data
    assert config is not None and data is not None  # the spec validator requires model and data with distill
    if teacher_path is None:
        raise SpecError("distill: the job has no teacher file (upload the teacher's state dict as `teacher`)")
    lo, hi = span
    progress("distill", lo, "loading the teacher")
    teacher = load_teacher(config, teacher_path)
    teacher_eval = evaluate(teacher, data.eval_set, device=job.device, timing=False).to_dict()
    reported = data.info(data.eval_split)
    student_before = evaluate(job.model, data.eval_set, device=job.device, timing=False).to_dict()

    def on_epoch(stats: EpochStats) -> None:
        err = "" if stats.test_error is None else f", validation error {100 * stats.test_error:.2f}%"
        progress(
            "distill",
            lo + (hi - lo) * stats.epoch / stats.epochs,
            f"epoch {stats.epoch}/{stats.epochs}: loss {stats.train_loss:.4f}{err}",
        )

    history = distill(
        job.model,
        teacher,
        data.train,
        config,
        eval_set=data.choice_set,  # per-epoch errors on validation; the test split is only reported
        device=job.device,
        on_epoch=on_epoch,
        should_cancel=should_cancel,
    )
    job.original = {k: v.detach().cpu().clone() for k, v in job.model.state_dict().items()}
    return {
        "config": config.model_dump(mode="json"),
        "teacher": {
            "error": teacher_eval["error"],
            "samples": teacher_eval["samples"],
            **reported,
            "params": sum(p.numel() for p in teacher.parameters()),
        },
        "student_params": sum(p.numel() for p in job.model.parameters()),
        "student_error_before": student_before["error"],
        "student_error_before_split": reported,
        "history": [s.to_dict() for s in history],
        "history_split": data.info(data.choice_split),
    }
