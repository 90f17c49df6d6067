"""The `structured` step's spec: whole channels zeroed by their L1/L2 norm, shapes kept."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import Field

from compression_core.deploy.spec import PhysicalPruningFields
from compression_core.methods.base import StepSpec


class ChannelNorm(StrEnum):
    l1 = "l1"
    l2 = "l2"


class StructuredStep(StepSpec, PhysicalPruningFields):  # deploy (issue 12): Torch-Pruning options
    """Channel pruning. Without `model`: zero the floor(sparsity · C + 1/2) slices along `dim` (output
    channels / rows for dim 0; compression_core.channels) with the smallest L1 or L2 norm, shapes kept
    (apply.py). With `model`: remove as many output channels physically with Torch-Pruning
    (compression_core/deploy/)."""

    type: Literal["structured"] = "structured"
    after: ClassVar[frozenset[str]] = frozenset()
    sparsity: float = Field(
        ge=0.0,
        lt=1.0,
        description="fraction of the channels removed (the nearest count, halves up; one channel stays)",
    )
    norm: ChannelNorm = ChannelNorm.l1
    dim: int = Field(default=0, ge=0, le=7, description="axis of the removed slices (0: output channels)")
