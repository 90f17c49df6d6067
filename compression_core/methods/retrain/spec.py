"""The spec's `retrain` field: Deep Compression's iterative prune-retrain and retraining with the compressed
structure held (pydantic only, no torch).

```json
"retrain": {"prune_schedule": [0.5, 0.75, 0.9, 1.0],
            "prune":    {"epochs": 2, "lr": 0.005},   retraining after each pruning iteration
            "finetune": {"epochs": 3, "lr": 0.001}}   retraining after quantization / low-rank
```
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator

from compression_core.methods.base import MethodSpec
from compression_core.spec.fields import RetrainConfig

__all__ = ["RetrainSpec"]


class RetrainSpec(MethodSpec):
    """Deep Compression's retraining: iterative prune-retrain, then retraining of the shared centroids
    (and of low-rank factors / kept values) with the structure held."""

    field: ClassVar[str] = "retrain"
    title: ClassVar[str] = "retraining"
    fallback: ClassVar[bool] = True  # a job with model and data but no method: evaluation around the rules
    hf: ClassVar[bool] = True  # a Hugging Face causal LM retrains with its own loss (retrain/lm.py)
    requirement: ClassVar[str] = (
        "retrain: `retrain` needs `data` (a built-in or the uploaded data file) and `model` (the network)"
    )

    prune_schedule: list[float] = Field(
        default_factory=lambda: [1.0],
        min_length=1,
        max_length=100,
        description="rising fractions of each rule's target sparsity; retrain after each (ends at 1.0)",
    )
    prune: RetrainConfig | None = Field(default=None, description="retraining after each pruning iteration")
    finetune: RetrainConfig | None = Field(default=None, description="retraining after quantization/low-rank")

    @field_validator("prune_schedule")
    @classmethod
    def _rising(cls, value: list[float]) -> list[float]:
        if any(not 0.0 < f <= 1.0 for f in value) or value != sorted(value) or value[-1] != 1.0:
            raise ValueError("must be rising fractions in (0, 1] ending at 1.0")
        return value
