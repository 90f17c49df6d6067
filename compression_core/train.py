"""Train a reference model from scratch, with the recipe of seeds 000/001 as the default.

The reference is what compression is measured against, so this is deliberately plain: seeded
initialisation, `RetrainConfig` (batch 16, SGD lr 0.005, momentum 0.9, Nesterov, StepLR gamma 0.95 each
epoch), cross-entropy, and a final evaluation on the test split reported with its sample count.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compression_core.data import DataSplits, check_against_model
from compression_core.errors import InputError
from compression_core.evaluate import Evaluation, evaluate
from compression_core.io import save_torch_file
from compression_core.models import ModelSpec, build_model
from compression_core.spec.fields import RetrainConfig
from compression_core.training.loop import EpochStats, train_epochs

__all__ = ["TrainResult", "save_state_dict", "train_reference"]

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    model: nn.Module
    history: list[EpochStats]
    evaluation: Evaluation  # on the test split (or the training split when there is none)


def train_reference(
    model_spec: ModelSpec | Mapping[str, Any],
    data: DataSplits,
    config: RetrainConfig | None = None,
    *,
    device: str = "cpu",
    on_epoch: Callable[[EpochStats], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> TrainResult:
    config = config or RetrainConfig(epochs=20)
    torch.manual_seed(config.seed)
    if not data.labelled:
        raise InputError(f"{data.name}: training a reference needs labels (y_train); the data has none")
    model = build_model(model_spec)
    check_against_model(data, model)
    history = train_epochs(
        model,
        data.train,
        config,
        eval_set=data.choice_set,  # monitored on validation; the final evaluation reports the test split
        device=device,
        on_epoch=on_epoch,
        should_cancel=should_cancel,
        stage="train",
    )
    evaluation = evaluate(model, data.eval_set, device=device, num_classes=data.num_classes)
    return TrainResult(model=model, history=history, evaluation=evaluation)


def save_state_dict(model: nn.Module, path: str | Path) -> Path:
    """Write the model's state dict: `.safetensors` when the name says so, else a `.pth` torch.save."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        save_torch_file(state, path)
    return path
