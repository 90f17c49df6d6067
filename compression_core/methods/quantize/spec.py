"""The `quantize` step's spec: weight sharing with a 1-D k-means codebook."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import Field

from compression_core.methods.base import StepSpec

MAX_CODEBOOK = 65536


class KMeansInit(StrEnum):
    linear = "linear"
    density = "density"
    kmeans_pp = "kmeans++"


class QuantizeStep(StepSpec):
    """Weight sharing: a 1-D k-means codebook of `k` float32 entries plus one index per weight."""

    type: Literal["quantize"] = "quantize"
    after: ClassVar[frozenset[str]] = frozenset({"prune", "structured"})  # codes the kept values
    k: int = Field(ge=2, le=MAX_CODEBOOK, description="codebook size")
    init: KMeansInit = KMeansInit.kmeans_pp
    iters: int = Field(default=50, ge=1, le=10_000, description="maximum Lloyd iterations")
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
