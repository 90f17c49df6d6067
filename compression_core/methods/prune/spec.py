"""The `prune` step's spec: magnitude pruning to κ kept weights, per tensor or over a whole rule (global), or
N:M semi-structured pruning (`pattern`, e.g. "2:4")."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from compression_core.methods.base import StepSpec
from compression_core.spec.base import MAX_KEEP


class Scope(StrEnum):
    layer = "layer"
    global_ = "global"


MAX_GROUP = 256  # M of an N:M pattern: hardware patterns are 2:4 / 1:2 / 4:8; larger groups are refused
_PATTERN = re.compile(r"^([0-9]{1,3}):([0-9]{1,3})$")


def parse_pattern(pattern: str) -> tuple[int, int]:
    """(N, M) of an "N:M" pattern; ValueError saying what is wrong (1 <= N < M <= MAX_GROUP)."""
    match = _PATTERN.match(pattern)
    if match is None:
        raise ValueError(f'must be "N:M" with whole numbers, e.g. "2:4" (got {pattern!r})')
    n, m = int(match.group(1)), int(match.group(2))
    if not 1 <= n < m <= MAX_GROUP:
        raise ValueError(f"N:M needs 1 <= N < M <= {MAX_GROUP} (got {n}:{m})")
    return n, m


class PruneStep(StepSpec):
    """Magnitude pruning: keep exactly `keep` weights (κ) or the fraction `1 - sparsity`, or the N largest
    magnitudes of every M consecutive weights along the input dimension (`pattern`)."""

    type: Literal["prune"] = "prune"
    after: ClassVar[frozenset[str]] = frozenset()  # prune comes first
    keep: int | None = Field(default=None, ge=1, le=MAX_KEEP, description="number of weights kept (κ)")
    sparsity: float | None = Field(default=None, ge=0.0, lt=1.0, description="fraction of weights set to 0")
    scope: Scope = Field(default=Scope.layer, description="global ranks magnitudes across the rule's tensors")
    pattern: str | None = Field(
        default=None,
        description='N:M semi-structured pruning, e.g. "2:4": in every group of M consecutive weights along '
        "the input dimension (a Linear's `in`, a conv's flattened in*kh*kw) keep the N largest magnitudes; "
        "a row whose length is not a multiple of M ends in a shorter group that keeps its N largest",
        examples=["2:4"],
    )

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            parse_pattern(value)
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> PruneStep:
        given = [f for f in ("keep", "sparsity", "pattern") if getattr(self, f) is not None]
        if len(given) != 1:
            raise ValueError("prune: give exactly one of keep or sparsity, or a pattern alone")
        if self.pattern is not None and self.scope is Scope.global_:
            raise ValueError('prune: a pattern applies per group of M weights; scope "global" does not')
        return self

    @property
    def nm(self) -> tuple[int, int] | None:
        """(N, M) of the pattern, or None for magnitude pruning to κ."""
        return None if self.pattern is None else parse_pattern(self.pattern)
