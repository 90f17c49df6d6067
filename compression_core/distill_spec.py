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

from pydantic import Field

from compression_core.training_spec import ModelSpec, RetrainConfig

__all__ = ["DistillSpec"]


class DistillSpec(RetrainConfig):
    """Hinton et al. 2015: loss = alpha · T² · KL(softmax(z_t/T) ‖ softmax(z_s/T)) + (1 − alpha) · CE."""

    teacher: ModelSpec = Field(description="the teacher's architecture (its weights: the job's teacher file)")
    temperature: float = Field(default=4.0, gt=0.0, le=100.0)
    alpha: float = Field(default=0.9, ge=0.0, le=1.0, description="weight of the soft-target term")
    epochs: int = Field(default=10, ge=1, le=10_000)
