"""Spec fields of the deployment stage (pydantic only, no torch import, so the service can publish the
schema cheaply): Torch-Pruning options of the `structured` step, and the `export` list.

With the spec's `model`, a `structured` step removes channels physically through Torch-Pruning's
dependency graph (compression_core/deploy/pruning.py); without a model the data-free zero-channel form of
compression_core/methods/structured.py stays as it was, and these fields must keep their defaults.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "ExportFormat",
    "Importance",
    "PhysicalPruningFields",
    "PruneScope",
    "check_deploy_fields",
    "export_formats",
]

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


def check_deploy_fields(spec: Any) -> None:
    """What the Torch-Pruning options and `export` need (ValueError, as the spec's validators raise)."""
    model, data = getattr(spec, "model", None), getattr(spec, "data", None)
    for index, rule in enumerate(getattr(spec, "rules", [])):
        step = rule.step("structured")
        if not isinstance(step, PhysicalPruningFields):
            continue
        if model is None and step.physical_options_set:
            raise ValueError(
                f"rules.{index}: importance, scope, round_to and ignore remove channels physically "
                "and need `model` (the architecture to prune)"
            )
        if model is not None and getattr(step, "dim", 0) != 0:
            raise ValueError(
                f"rules.{index}: with `model`, structured pruning removes output channels (dim 0)"
            )
        if model is not None and step.importance is Importance.taylor and data is None:
            raise ValueError(f"rules.{index}: taylor importance needs `data` (gradients)")
        if model is not None and any(getattr(spec, f, None) is not None for f in ("lc", "sws")):
            raise ValueError(
                f"rules.{index}: physical structured pruning combines with `retrain`, not with `lc` or `sws`"
            )
    if getattr(spec, "export", None) and model is None:
        raise ValueError("export: exporting needs `model` (the architecture to run)")


def export_formats(spec: Any) -> list[ExportFormat]:
    """What a job exports: the list given, else ONNX whenever a model is named; int8 needs ONNX."""
    given = getattr(spec, "export", None)
    formats = list(given) if given is not None else []
    if given is None and getattr(spec, "model", None) is not None:
        formats = [ExportFormat.onnx]
    if getattr(spec, "int8", None) is not None and ExportFormat.onnx not in formats:
        formats.append(ExportFormat.onnx)
    return formats
