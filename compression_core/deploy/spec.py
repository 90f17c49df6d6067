"""Spec fields of the deployment stage (pydantic only, no torch import, so the service can publish the
schema cheaply): Torch-Pruning options of the `structured` step, and the `export` list.

With the spec's `model`, a `structured` step removes channels physically through Torch-Pruning's
dependency graph (compression_core/deploy/pruning.py); without a model the data-free zero-channel form of
compression_core/methods/structured.py stays as it was, and these fields must keep their defaults.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["ExportFormat", "Importance", "PhysicalPruningFields", "PruneScope"]

MAX_IGNORED = 10_000


class Importance(StrEnum):
    """How channels are ranked: weight norms (data-free) or first-order Taylor |w · dL/dw| (needs data)."""

    l1 = "l1"
    l2 = "l2"
    taylor = "taylor"


class PruneScope(StrEnum):
    layer = "layer"  # every selected layer loses `sparsity` of its channels
    global_ = "global"  # the rule's layers share one ranking: `sparsity` of their channels in all


class ExportFormat(StrEnum):
    onnx = "onnx"


class PhysicalPruningFields(BaseModel):
    """The Torch-Pruning options of a `structured` step (used only when the spec has `model`)."""

    model_config = ConfigDict(extra="forbid")

    importance: Importance | None = Field(
        default=None, description="channel ranking with a model: l1, l2 or taylor (needs data); default: norm"
    )
    scope: PruneScope = Field(
        default=PruneScope.layer,
        description="with a model: per-layer sparsity or one global ranking per rule",
    )
    round_to: int | None = Field(
        default=None, ge=1, le=4096, description="with a model: kept channel counts rounded to a multiple"
    )
    ignore: list[str] = Field(
        default_factory=list,
        max_length=MAX_IGNORED,
        description="with a model: layer names (globs) whose output channels are never removed",
    )

    @field_validator("ignore")
    @classmethod
    def _non_empty_names(cls, value: list[str]) -> list[str]:
        if any(not name or len(name) > 1000 for name in value):
            raise ValueError("ignore: layer names must be non-empty strings of at most 1000 characters")
        return value

    @property
    def physical_options_set(self) -> bool:
        """Whether any option that only Torch-Pruning understands differs from its default."""
        return (
            self.importance is not None
            or self.scope is not PruneScope.layer
            or self.round_to is not None
            or bool(self.ignore)
        )
