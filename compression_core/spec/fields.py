"""The spec fields every data-aware method shares: `model`, `data` and the training recipe (pydantic only,
no torch import, so the service can publish the JSON Schema cheaply).

```json
"model":   {"arch": "lenet300", "kwargs": {}},
"data":    {"builtin": "mnist-5k"}            or {"upload": true}  (the data file sent with the job);
           "validation": 0.1 (default) of the training data is carved off as the validation split
"retrain": {"prune_schedule": [0.5, 0.75, 0.9, 1.0],
            "prune":    {"epochs": 2, "lr": 0.005},   retraining after each pruning iteration
            "finetune": {"epochs": 3, "lr": 0.001}}   retraining after quantization / low-rank
```
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field, field_validator, model_validator

from compression_core.spec.base import Strict

__all__ = ["BUILTIN_DATASET_NAMES", "DataSpec", "ModelSpec", "OptimizerName", "RetrainConfig"]

BUILTIN_DATASET_NAMES = ("digits", "fashion-mnist", "mnist-5k")
MAX_INPUT_VALUES = 3 * 4096 * 4096


class ModelSpec(Strict):
    """Which architecture to build: a name and the keyword arguments of its constructor, or `hf: true`
    (a Hugging Face checkpoint whose config.json names the architecture; compression_core/sources/hf/)."""

    arch: str = Field(
        default="",
        max_length=200,
        description="lenet300, lenet5, mlp, a torchvision classifier or an mcs.models entry point",
    )
    hf: bool = Field(
        default=False,
        description="the model is a Hugging Face checkpoint (config.json + safetensors, a folder or tar); "
        "transformers builds the architecture config.json names, never with remote code",
    )
    kwargs: dict[str, Any] = Field(default_factory=dict, description="constructor keyword arguments")
    # deploy (issue 12): the traced / exported input, when neither the data nor the architecture tells it
    input_shape: list[int] | None = Field(
        default=None,
        min_length=1,
        max_length=5,
        description="one sample's input shape without the batch, e.g. [3, 224, 224]",
    )

    @model_validator(mode="after")
    def _one_architecture(self) -> ModelSpec:
        if bool(self.arch) == self.hf:
            raise ValueError('give exactly one of {"arch": NAME} or {"hf": true}')
        if self.hf and self.kwargs:
            raise ValueError("model.kwargs: a Hugging Face checkpoint's sizes come from its config.json")
        return self

    @field_validator("input_shape")
    @classmethod
    def _bounded_shape(cls, value: list[int] | None) -> list[int] | None:
        """One sample is traced, exported and timed: at most MAX_INPUT_VALUES (64 MiB of float32; a
        4096 x 4096 RGB image); what the traced activations need is bounded by the byte budget."""
        if value is not None and (any(d < 1 or d > 65536 for d in value) or _prod(value) > MAX_INPUT_VALUES):
            raise ValueError(
                f"input_shape: sizes from 1 to 65536, at most {MAX_INPUT_VALUES:,} values per sample"
            )
        return value


def _prod(values: list[int]) -> int:
    out = 1
    for v in values:
        out *= v
    return out


class DataSpec(Strict):
    """Where the data comes from: a built-in by name, or the data file uploaded with the job."""

    builtin: str | None = Field(default=None, description=f"one of {list(BUILTIN_DATASET_NAMES)}")
    upload: bool = Field(
        default=False, description="use the .npz/.safetensors data file uploaded with the job"
    )
    validation: float = Field(
        default=0.1,
        ge=0.0,
        le=0.5,
        description="fraction of the training data carved off (fixed seed) as the validation split that "
        "schedules and searches choose on; 0 disables it (an upload's x_val/y_val replace it)",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> DataSpec:
        if (self.builtin is None) == (not self.upload):
            raise ValueError('give exactly one of {"builtin": NAME} or {"upload": true}')
        if self.builtin is not None and self.builtin not in BUILTIN_DATASET_NAMES:
            raise ValueError(
                f"unknown built-in data set {self.builtin!r}; known: {list(BUILTIN_DATASET_NAMES)}"
            )
        return self


class OptimizerName(StrEnum):
    sgd = "sgd"
    adam = "adam"


class RetrainConfig(Strict):
    """How to (re)train: the defaults are the reference recipe of seeds 000/001 (batch 16, SGD lr 0.005,
    momentum 0.9, Nesterov, StepLR gamma 0.95 every epoch)."""

    epochs: int = Field(default=1, ge=0, le=10_000)
    optimizer: OptimizerName = OptimizerName.sgd
    lr: float = Field(default=0.005, gt=0.0, le=10.0)
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)
    nesterov: bool = True
    weight_decay: float = Field(default=0.0, ge=0.0, le=1.0)
    batch_size: int = Field(default=16, ge=1, le=1_000_000)
    step_size: int = Field(
        default=1, ge=1, le=10_000, description="StepLR: epochs between learning-rate decays"
    )
    gamma: float = Field(default=0.95, gt=0.0, le=1.0, description="StepLR: decay factor")
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
