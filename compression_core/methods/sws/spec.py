"""The spec's `sws` field: soft weight-sharing (Ullrich, Meeds & Welling 2017) — pydantic only, no torch, so
the service can publish the JSON Schema cheaply.

```json
"sws": {"select": "*", "components": 17, "pi_zero": 0.99, "tau": 5e-3, "epochs": 30, "lr": 5e-4}
```

The defaults follow the authors' tutorial (LeNet on MNIST): 16 learned components plus the zero component
with fixed mixing proportion 0.99, loss = cross-entropy + tau/N · (−log p(w)), Adam with learning rates
5e-4 (weights), 1e-4 (means), 3e-3 (log-precisions), 3e-3 (mixing proportions), Gamma hyperpriors on the
precisions with shape/rate (5000, 2) for the zero component and (250, 0.1) for the others.

One deviation: every component starts narrow (σ = 0.05 · max|w|, the tutorial starts at σ = 0.25). With
wide starting components and a short schedule the zero component is still wide when training stops and
takes almost every weight (measured on LeNet-300-100 / mnist-5k, 15 epochs: 99.9% zeros and chance accuracy
with 0.25 · max|w|, 95.3% zeros at -0.6 points with 0.05 · max|w|).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator

from compression_core.methods.base import MethodSpec
from compression_core.spec.base import Strict

__all__ = ["GammaPrior", "SWSSpec"]


class GammaPrior(Strict):
    """Gamma(shape, rate) hyperprior on a component's precision λ = 1/σ²: −log p(λ) = (1 − shape) log λ
    + rate · λ; its mode (shape − 1)/rate is the precision it pulls towards."""

    shape: float = Field(ge=1.0, le=1e7)
    rate: float = Field(gt=0.0, le=1e7)


class SWSSpec(MethodSpec):
    """Retraining with a Gaussian-mixture prior over the selected weights, then quantization to its means."""

    field: ClassVar[str] = "sws"
    title: ClassVar[str] = "soft weight-sharing"
    description: ClassVar[str] = "soft weight-sharing: retrain with a mixture prior (needs model and data)"
    excludes: ClassVar[tuple[str, ...]] = ("lc", "retrain")
    requirement: ClassVar[str] = "sws: soft weight-sharing needs `model` and `data` (it trains the model)"
    exclusion: ClassVar[str] = "sws: soft weight-sharing replaces `lc` and `retrain`; give one of them"

    select: str | list[str] = Field(
        default="*",
        description="glob pattern(s) on parameter names; biases and norm parameters only when named",
    )
    components: int = Field(default=17, ge=2, le=256, description="J, the zero component included")
    pi_zero: float = Field(default=0.99, gt=0.0, lt=1.0, description="fixed mixing proportion at zero")
    tau: float = Field(default=5e-3, gt=0.0, le=100.0, description="prior weight (divided by N samples)")
    epochs: int = Field(default=30, ge=1, le=10_000)
    batch_size: int = Field(default=256, ge=1, le=1_000_000)
    lr: float = Field(default=5e-4, gt=0.0, le=1.0, description="Adam learning rate of the weights")
    lr_means: float = Field(default=1e-4, gt=0.0, le=1.0)
    lr_log_precisions: float = Field(default=3e-3, gt=0.0, le=1.0)
    lr_mixing: float = Field(default=3e-3, gt=0.0, le=1.0)
    init_std: float = Field(
        default=0.05,
        gt=0.0,
        le=100.0,
        description="initial σ of every component, as a fraction of max|w| (narrow: see the module doc)",
    )
    gamma_zero: GammaPrior | None = Field(default_factory=lambda: GammaPrior(shape=5e3, rate=2.0))
    gamma_other: GammaPrior | None = Field(default_factory=lambda: GammaPrior(shape=2.5e2, rate=0.1))
    max_log_precision: float = Field(
        default=20.0, ge=0.0, le=50.0, description="bound on log λ (σ ≥ e^-10), keeps training finite"
    )
    merge_kl: float = Field(
        default=1e-2, ge=0.0, le=100.0, description="merge components whose KL divergence is below this"
    )
    eval_every: int = Field(
        default=1, ge=1, le=10_000, description="validation error every n epochs (and last)"
    )
    seed: int = Field(default=0, ge=0, le=2**32 - 1)

    @field_validator("select")
    @classmethod
    def _non_empty(cls, value: str | list[str]) -> str | list[str]:
        patterns = [value] if isinstance(value, str) else value
        if not patterns or any(not p for p in patterns):
            raise ValueError("select patterns must be non-empty strings")
        return value

    @property
    def patterns(self) -> list[str]:
        return [self.select] if isinstance(self.select, str) else list(self.select)
