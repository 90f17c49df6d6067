"""The `search` field of a spec: run the spec many times with some numeric fields varied, as child jobs.

```json
"search": {"mode": "grid", "parameters": {"rules.0.steps.0.sparsity": [0.8, 0.9, 0.95]}}
"search": {"mode": "budget", "parameters": {"rules.0.steps.0.sparsity": {"low": 0.5, "high": 0.99}},
           "max_error_increase": 0.5, "max_trials": 12}
"search": {"mode": "sensitivity", "values": [0.5, 0.7, 0.9], "max_error_increase": 1.0}
"search": {"mode": "budget", "parameters": {...}, "min_top1_agreement": 0.99}   (fidelity: no labels needed)
```

A parameter is any numeric field by its path in the spec (the same paths a 422 names). This module is
pydantic only (no torch), so the service validates a search as cheaply as any spec; the checks that
need the whole spec (does the path exist, does the step accept the value) are in `paths.py`.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from compression_core.methods.base import MethodSpec
from compression_core.spec.base import Strict

__all__ = ["Combine", "Holdout", "Range", "SearchMode", "SearchSpec", "MAX_TRIALS"]

MAX_TRIALS = 256  # a search is many jobs: bound it like any other size a spec declares
MAX_VALUES = 256
BUDGETS = (
    "max_error_increase",
    "min_top1_agreement",
    "max_relative_output_error",
    "max_perplexity_increase",
)

Number = int | float


class SearchMode(StrEnum):
    grid = "grid"
    budget = "budget"
    sensitivity = "sensitivity"


class Combine(StrEnum):
    grid = "grid"  # every combination (Cartesian product)
    zip = "zip"  # the i-th value of every parameter together


class Range(Strict):
    """A continuous (or integer, when both ends are integers) interval for budget searches."""

    low: Number
    high: Number
    log: bool = Field(default=False, description="search on a log scale (both ends > 0)")

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low >= self.high:
            raise ValueError("needs finite low < high")
        if self.log and self.low <= 0:
            raise ValueError("log: needs low > 0")
        return self

    @property
    def integer(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)


class Holdout(Strict):
    """The validation split a search chooses on: a fixed-seed fraction of the training split, never the
    test split (the reported errors are on the test split)."""

    fraction: float = Field(default=0.2, gt=0.0, lt=0.9)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)


class SearchSpec(MethodSpec):
    """A search over the rest of the spec: each trial is the spec with some numeric fields set."""

    field: ClassVar[str] = "search"
    title: ClassVar[str] = "a search"
    description: ClassVar[str] = "grid / budget / sensitivity search over numeric fields of this spec"
    requirement: ClassVar[str] = "search: a search needs `model` and `data` (each trial is measured on data)"
    # on a Hugging Face causal LM: a budget in perplexity, the sensitivity per decoder layer
    hf: ClassVar[bool] = True
    # every trial's spec is valid (a SearchPathError naming the path) before anything is queued
    checker: ClassVar[str] = "compression_core.methods.search.check:check_search"

    mode: SearchMode
    parameters: dict[str, list[Number] | list[str] | Range] = Field(
        default_factory=dict,
        description="spec path -> values (grid) or {low, high} (budget); a grid may list the strings of a "
        'string field (e.g. "wquant.algorithm": ["rtn", "gptq"])',
    )
    combine: Combine = Combine.grid
    max_trials: int = Field(default=16, ge=1, le=MAX_TRIALS)
    max_error_increase: float | None = Field(
        default=None,
        ge=0.0,
        le=100.0,
        description="points of validation error above the uploaded model's that a trial may add",
    )
    min_top1_agreement: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="budget in fidelity: the least top-1 agreement with the uploaded model's predictions on "
        "the validation split (a fraction, e.g. 0.99); needs no labels",
    )
    max_relative_output_error: float | None = Field(
        default=None,
        ge=0.0,
        le=1e6,
        description="budget in fidelity: the largest ||f_c(X) - f_0(X)|| / ||f_0(X)|| against the uploaded "
        "model on the validation split (e.g. 0.05); needs no labels, and no class scores",
    )
    max_perplexity_increase: float | None = Field(
        default=None,
        ge=0.0,
        le=1e6,
        description="budget for a Hugging Face causal LM (model.hf): the largest increase of perplexity over "
        "the uploaded model's on the validation token ids (points, e.g. 0.5); docs/transformers.md",
    )
    values: list[Number] | None = Field(
        default=None, max_length=MAX_VALUES, description="sensitivity: the values each layer is tried at"
    )
    rule: int = Field(default=0, ge=0, description="sensitivity: the rule whose step is applied per layer")
    step_field: str | None = Field(
        default=None, description="sensitivity: the step field varied (default: sparsity, k, energy or rank)"
    )
    layers: list[str] | None = Field(
        default=None, max_length=1024, description="sensitivity: name globs narrowing the rule's tensors"
    )
    validation: Holdout = Field(default_factory=Holdout)
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="seed of the Optuna sampler")

    @field_validator("parameters")
    @classmethod
    def _bounded(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(value) > 16:
            raise ValueError("at most 16 parameters")
        for path, values in value.items():
            if not path or len(path) > 256:
                raise ValueError(f"{path!r}: a path is 1 to 256 characters")
            if isinstance(values, list):
                if not 1 <= len(values) <= MAX_VALUES:
                    raise ValueError(f"{path}: give 1 to {MAX_VALUES} values")
                if any(isinstance(v, float) and not math.isfinite(v) for v in values):
                    raise ValueError(f"{path}: values must be finite")
        return value

    @model_validator(mode="after")
    def _mode_fields(self) -> SearchSpec:
        given = [name for name in BUDGETS if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"give one budget, not {' and '.join(given)}")
        if self.mode is SearchMode.sensitivity:
            if self.parameters:
                raise ValueError("sensitivity: give `values` (tried on each layer), not `parameters`")
            if not self.values:
                raise ValueError("sensitivity: `values` is required")
            return self
        if self.values is not None or self.layers is not None or self.step_field is not None:
            raise ValueError(
                f"{self.mode}: `values`, `layers` and `step_field` belong to sensitivity searches"
            )
        if not self.parameters:
            raise ValueError(f"{self.mode}: give at least one parameter (spec path -> values)")
        words = [
            p
            for p, v in self.parameters.items()
            if isinstance(v, list) and any(isinstance(x, str) for x in v)
        ]
        if words and self.mode is not SearchMode.grid:
            raise ValueError(
                f"{self.mode}: {', '.join(words)} lists strings; a budget search bisects or samples numbers "
                "(search strings in a grid, or run one search per value)"
            )
        if self.mode is SearchMode.grid:
            ranges = [p for p, v in self.parameters.items() if isinstance(v, Range)]
            if ranges:
                raise ValueError(f"grid: give lists of values, not ranges ({', '.join(ranges)})")
            lengths = {len(v) for v in self.parameters.values() if isinstance(v, list)}
            if self.combine is Combine.zip and len(lengths) > 1:
                raise ValueError("combine zip: every parameter needs the same number of values")
            if self.grid_size() > self.max_trials:
                raise ValueError(
                    f"the grid has {self.grid_size()} points, more than max_trials={self.max_trials}"
                )
        if self.mode is SearchMode.budget and not given:
            raise ValueError(
                "budget: a budget is required: `max_error_increase` (points of error, needs labels), "
                "`min_top1_agreement` or `max_relative_output_error` (fidelity to the uploaded model), or "
                "`max_perplexity_increase` (a Hugging Face causal LM)"
            )
        return self

    def grid_size(self) -> int:
        lengths = [len(v) for v in self.parameters.values() if isinstance(v, list)]
        if not lengths:
            return 0
        return lengths[0] if self.combine is Combine.zip else math.prod(lengths)

    @property
    def budget_measure(self) -> str:
        """What the budget limits, measured on the validation split (`TrialResult.validation_increase`):
        "error" (the error's increase; needs labels), "agreement" (the loss of top-1 agreement with the
        upload, 1 - agreement), "output_error" (the relative output error against the upload) or
        "perplexity" (a causal LM's perplexity increase over the upload's, in points)."""
        if self.min_top1_agreement is not None:
            return "agreement"
        if self.max_relative_output_error is not None:
            return "output_error"
        if self.max_perplexity_increase is not None:
            return "perplexity"
        return "error"

    @property
    def budget_fraction(self) -> float | None:
        """The budget as the largest allowed increase of `budget_measure` (a fraction, like
        `evaluation.*.error`): max_error_increase / 100, 1 - min_top1_agreement, or
        max_relative_output_error, or max_perplexity_increase (points); None without a budget."""
        if self.min_top1_agreement is not None:
            return 1.0 - self.min_top1_agreement
        if self.max_relative_output_error is not None:
            return self.max_relative_output_error
        if self.max_perplexity_increase is not None:
            return self.max_perplexity_increase  # points of perplexity, not a fraction
        return None if self.max_error_increase is None else self.max_error_increase / 100.0

    def budget_text(self) -> str:
        """The budget as the spec states it (for messages and metrics)."""
        if self.min_top1_agreement is not None:
            return f"top-1 agreement with the upload at least {self.min_top1_agreement:g}"
        if self.max_relative_output_error is not None:
            return f"relative output error at most {self.max_relative_output_error:g}"
        if self.max_perplexity_increase is not None:
            return f"perplexity increase at most {self.max_perplexity_increase:g}"
        increase = self.max_error_increase
        return "no budget" if increase is None else f"error increase at most {increase:g} points"
