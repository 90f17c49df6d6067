"""The spec's `distill` field: knowledge distillation from an uploaded teacher (pydantic only, no torch, so
the service can publish the JSON Schema cheaply).

```json
"model":   {"arch": "mlp", "kwargs": {"sizes": [784, 32, 10]}},          the student
"distill": {"teacher": {"arch": "lenet300"}, "temperature": 4, "alpha": 0.9, "epochs": 10, "lr": 0.01}
```

The job's `teacher` file holds the teacher's state dict (loaded with the safe loader only); the job's
`model` file holds the student's starting weights. Training fields are those of `RetrainConfig`.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from compression_core.methods.base import MethodSpec
from compression_core.spec.fields import ModelSpec, RetrainConfig

__all__ = ["DistillSpec"]


class DistillSpec(RetrainConfig, MethodSpec):
    """Hinton et al. 2015: loss = alpha · T² · KL(softmax(z_t/T) ‖ softmax(z_s/T)) + (1 − alpha) · CE."""

    field: ClassVar[str] = "distill"
    title: ClassVar[str] = "distillation"
    description: ClassVar[str] = "train the student `model` from the job's teacher file before compression"
    excludes: ClassVar[tuple[str, ...]] = ("lc", "sws")
    inputs: ClassVar[tuple[str, ...]] = ("teacher",)
    requirement: ClassVar[str] = "distill: distillation needs `model` (the student) and `data`"
    exclusion: ClassVar[str] = "distill: combine distillation with rules or `retrain`, not with `lc` or `sws`"
    hf: ClassVar[bool] = True  # a causal LM: KL to the teacher's logits in the retraining (distill/lm.py)
    checker: ClassVar[str] = "compression_core.methods.distill.check:check_spec"

    teacher: ModelSpec = Field(description="the teacher's architecture (its weights: the job's teacher file)")
    temperature: float = Field(default=4.0, gt=0.0, le=100.0)
    alpha: float = Field(default=0.9, ge=0.0, le=1.0, description="weight of the soft-target term")
    epochs: int = Field(default=10, ge=1, le=10_000)
