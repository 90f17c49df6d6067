"""The `prune` step's spec: magnitude pruning to κ kept weights, per tensor or over a whole rule (global)."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from compression_core.methods.base import StepSpec
from compression_core.spec.base import MAX_KEEP


class Scope(StrEnum):
    layer = "layer"
    global_ = "global"


class PruneStep(StepSpec):
    """Magnitude pruning: keep exactly `keep` weights (κ) or the fraction `1 - sparsity`."""

    type: Literal["prune"] = "prune"
    after: ClassVar[frozenset[str]] = frozenset()  # prune comes first
    keep: int | None = Field(default=None, ge=1, le=MAX_KEEP, description="number of weights kept (κ)")
    sparsity: float | None = Field(default=None, ge=0.0, lt=1.0, description="fraction of weights set to 0")
    scope: Scope = Field(default=Scope.layer, description="global ranks magnitudes across the rule's tensors")

    @model_validator(mode="after")
    def _exactly_one(self) -> PruneStep:
        if (self.keep is None) == (self.sparsity is None):
            raise ValueError("prune: give exactly one of keep or sparsity")
        return self
