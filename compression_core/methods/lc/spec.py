"""The spec's `lc` field: the LC algorithm's μ schedule and L-step optimizer (pydantic only, no torch, so the
service can publish the JSON Schema cheaply).

```json
"lc": {"mu0": 5e-5, "mu_growth": 1.15, "steps": 30,
       "l_step": {"epochs": 10, "lr": 0.2, "gamma": 0.98, "momentum": 0.9, "batch_size": 256}}
```

The defaults are the schedule of seed 001 (LeNet-5 on MNIST): μ_k = 5e-5 · 1.15^k for k = 0..29,
10 L-step epochs per step, the L step's learning rate 0.2 · 0.98^k (SGD, momentum 0.9, Nesterov).
"""

from __future__ import annotations

import math
from typing import ClassVar

from pydantic import Field, model_validator

from compression_core.methods.base import MethodSpec
from compression_core.spec.base import Strict

__all__ = ["LCSpec", "LStepSpec", "MAX_MU"]

MAX_MU = 1e9  # beyond this the penalty swamps any data loss in float32: the schedule is a mistake


class LStepSpec(Strict):
    """SGD on loss + μ/2 ||w - Δ(Θ) - λ/μ||²; a fresh optimizer each LC step, learning rate lr · gamma^k."""

    epochs: int = Field(default=10, ge=1, le=1000, description="epochs of SGD per L step")
    lr: float = Field(default=0.2, gt=0.0, le=10.0, description="learning rate of the first L step")
    gamma: float = Field(default=0.98, gt=0.0, le=1.0, description="learning rate decay per LC step")
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)
    nesterov: bool = True
    weight_decay: float = Field(default=0.0, ge=0.0, le=1.0)
    batch_size: int = Field(default=256, ge=1, le=1_000_000)
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="shuffle order (a new one each step)")


class LCSpec(MethodSpec):
    """The LC run: μ schedule, Lagrange multipliers, evaluation cadence and the L step."""

    field: ClassVar[str] = "lc"
    title: ClassVar[str] = "the LC algorithm"
    description: ClassVar[str] = "run the LC algorithm (needs model and data) instead of direct compression"
    excludes: ClassVar[tuple[str, ...]] = ("retrain",)
    requirement: ClassVar[str] = "lc: the LC algorithm needs `model` and `data` (it trains the model)"
    exclusion: ClassVar[str] = "lc: the LC algorithm replaces `retrain`; give one of them"

    mu0: float = Field(default=5e-5, gt=0.0, le=MAX_MU, description="μ of the first LC step")
    mu_growth: float = Field(default=1.15, ge=1.0, le=100.0, description="μ_k = mu0 · mu_growth^k")
    steps: int = Field(default=30, ge=1, le=1000, description="number of LC steps (L step + C step)")
    multipliers: bool = Field(
        default=True, description="augmented Lagrangian (λ updates); false gives the quadratic penalty"
    )
    eval_every: int = Field(
        default=1, ge=1, le=1000, description="validation error of Δ(Θ) every n steps (and after the last)"
    )
    l_step: LStepSpec = Field(default_factory=LStepSpec)

    @model_validator(mode="after")
    def _bounded_schedule(self) -> LCSpec:
        last = math.log10(self.mu0) + (self.steps - 1) * math.log10(self.mu_growth)
        if last > math.log10(MAX_MU):
            raise ValueError(
                f"the μ schedule ends at {self.mu0:g} · {self.mu_growth:g}^{self.steps - 1} = 10^{last:.1f}, "
                f"above {MAX_MU:g}; use fewer steps or a smaller mu_growth"
            )
        return self

    def mu_schedule(self) -> list[float]:
        """μ_k = mu0 · mu_growth^k for k = 0..steps-1."""
        return [self.mu0 * self.mu_growth**k for k in range(self.steps)]
