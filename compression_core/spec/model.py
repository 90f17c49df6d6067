"""The static parents of the spec's `Rule` and `Spec` models and their registry-driven checks.

`assemble.py` subclasses them with the registered steps and methods (the step union, one top-level field per
whole-model method); the checks here read what the registered classes declare, so no method is named here.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, model_validator

from compression_core.deploy.spec import ExportFormat, check_deploy_fields, export_formats
from compression_core.methods.base import MethodSpec, StepSpec
from compression_core.spec.base import DefaultPolicy, Encoding, Selector, Strict
from compression_core.spec.fields import DataSpec, ModelSpec
from compression_core.streaming.spec import OutputsSpec

__all__ = ["CHECKED", "CHECKED_CONTEXT", "RuleBase", "SpecBase"]

# `Spec.model_validate(stored, context=CHECKED_CONTEXT)`: a spec that passed every check when it was
# submitted is read again without the whole-spec checkers (a search's check validates its trials: the
# worker re-read it every round and after every trial, issue 21 item 4); the fields are validated as ever
CHECKED = "checked"
CHECKED_CONTEXT = {CHECKED: True}


def _plan_text(plan: tuple[str, ...]) -> str:
    return "[" + ", ".join(plan) + "]"


class RuleBase(Strict):
    name: str | None = None
    select: Selector = Field(default_factory=Selector)
    steps: list[StepSpec] = Field(min_length=1)
    encoding: Encoding = Encoding.huffman

    plans: ClassVar[tuple[tuple[str, ...], ...]] = ()  # set by assemble: the allowed step sequences

    @model_validator(mode="after")
    def _allowed_combination(self) -> RuleBase:
        plan = tuple(step.type for step in self.steps)
        if plan not in self.plans:
            by_type = {step.type: type(step) for step in self.steps}
            apart = [
                (a, b)
                for i, a in enumerate(plan)
                for b in plan[i + 1 :]
                if a != b and a not in by_type[b].after and b not in by_type[a].after
            ]
            hint = f" ({apart[0][0]} and {apart[0][1]} cannot combine)" if apart else ""
            allowed = ", ".join(_plan_text(p) for p in self.plans)
            raise ValueError(f"steps: {list(plan)} is not an allowed combination{hint}; allowed: {allowed}")
        return self

    def step(self, kind: str) -> StepSpec | None:
        """This rule's step of type `kind`, if it has one."""
        return next((s for s in self.steps if s.type == kind), None)

    def label(self, index: int) -> str:
        return f"rule #{index} ({self.name})" if self.name else f"rule #{index}"


class SpecBase(Strict):
    """A whole compression job. `model` and `data` switch on the data-aware path (evaluation before/after);
    whole-model methods (`retrain`, `lc`, `sws`, `distill`, ...) train around the rules' steps; without
    them compression is data-free."""

    version: Literal[1] = 1
    rules: list[RuleBase] = Field(default_factory=list)
    default: DefaultPolicy = Field(default_factory=DefaultPolicy)
    model: ModelSpec | None = None
    data: DataSpec | None = None
    outputs: OutputsSpec = Field(default_factory=OutputsSpec)  # stream (issue 14): dense copy optional
    # deploy (issue 12): the deployable formats (compression_core/deploy/spec.py)
    export: list[ExportFormat] | None = Field(
        default=None, max_length=4, description='deployable formats; default ["onnx"] when `model` is given'
    )

    method_specs: ClassVar[tuple[type[MethodSpec], ...]] = ()  # set by assemble, registry order

    @model_validator(mode="after")
    def _method_fields(self, info: ValidationInfo) -> SpecBase:
        if self.data is not None and self.model is None:
            fields = " and ".join(
                ["`data`", *(f"`{m.field}`" for m in self.method_specs if "model" in m.needs)]
            )
            raise ValueError(f"model: {fields} need `model` (the architecture to build)")
        for cls in self.method_specs:
            if getattr(self, cls.field, None) is None:
                continue
            if self.model is not None and self.model.hf and not cls.hf:
                raise ValueError(
                    f"{cls.field}: {cls.title} does not run on a Hugging Face model (model.hf) yet; "
                    "its methods are the rules' per-tensor steps, `wquant`, `retrain`, `distill` and `search`"
                )
            missing = [n for n in cls.needs if getattr(self, n, None) is None]
            if missing:
                raise ValueError(
                    cls.requirement
                    or f"{cls.field}: {cls.title} needs " + " and ".join(f"`{n}`" for n in missing)
                )
            clash = [n for n in cls.excludes if getattr(self, n, None) is not None]
            if clash:
                raise ValueError(
                    cls.exclusion
                    or f"{cls.field}: {cls.title} replaces "
                    + " and ".join(f"`{n}`" for n in clash)
                    + "; give one"
                )
            if not (info.context or {}).get(CHECKED):  # whole-spec checks ran when it was submitted
                getattr(self, cls.field).check(self)
        check_deploy_fields(self)  # deploy (issue 12): Torch-Pruning options, int8 and export
        return self

    @property
    def export_formats(self) -> list[ExportFormat]:
        return export_formats(self)

    def method(self, field: str) -> Any:
        """The configuration of the whole-model method under `field` (None when absent or unknown)."""
        return getattr(self, field, None)
