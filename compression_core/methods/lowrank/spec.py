"""The `lowrank` step's spec: truncated SVD by rank, kept energy or the LC cost trade-off."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from compression_core.methods.base import StepSpec
from compression_core.spec.base import MAX_KEEP


class LowRankStep(StepSpec):
    """Truncated SVD of the matrix view, by fixed rank, by kept energy, or by the LC cost trade-off alpha."""

    type: Literal["lowrank"] = "lowrank"
    after: ClassVar[frozenset[str]] = frozenset()  # factors replace the whole tensor: alone
    rank: int | None = Field(default=None, ge=1, le=MAX_KEEP)
    energy: float | None = Field(default=None, gt=0.0, le=1.0, description="kept fraction of sum(s_i^2)")
    alpha: float | None = Field(default=None, gt=0.0, description="LC rank selection weight of storage cost")
    mu: float = Field(default=1.0, gt=0.0, description="LC penalty weight of the dropped energy (with alpha)")
    normalize: bool = Field(default=False, description="with alpha: divide the dropped energy by ||W||^2")

    @model_validator(mode="after")
    def _exactly_one(self) -> LowRankStep:
        given = [n for n in ("rank", "energy", "alpha") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(f"lowrank: give exactly one of rank, energy or alpha (got {given or 'none'})")
        return self
