"""What a search knows about one trial: its parameters, and the numbers its job reported."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["PlannedTrial", "TrialResult", "SUCCEEDED", "Value"]

SUCCEEDED = "succeeded"
Number = int | float
Value = int | float | str  # a grid may set a string field (wquant.algorithm)


@dataclass
class PlannedTrial:
    """A trial to run: its parameters (spec path -> value), the full spec it runs, and a label
    (sensitivity: the layer, or "suggested")."""

    parameters: dict[str, Value]
    spec: dict[str, Any]
    label: str | None = None


@dataclass
class TrialResult:
    """One row of the search table. Errors are fractions like `evaluation.*.error`: `error_*` on the
    test split (reported), `validation_error_*` on the held-out validation split (what the search chose
    on)."""

    index: int
    parameters: dict[str, Value]
    state: str
    label: str | None = None
    ratio: float | None = None
    lc_ratio: float | None = None
    error_before: float | None = None
    error_after: float | None = None
    validation_error_before: float | None = None
    validation_error_after: float | None = None
    # fidelity to the uploaded model (compression_core/fidelity.py): test split and validation split
    agreement_after: float | None = None
    output_error_after: float | None = None
    validation_agreement_after: float | None = None
    validation_output_error_after: float | None = None
    # a causal LM (model.hf): perplexity on the test split and on the validation token ids
    perplexity_before: float | None = None
    perplexity_after: float | None = None
    validation_perplexity_before: float | None = None
    validation_perplexity_after: float | None = None
    tokens: int | None = None  # tokens predicted on the test split
    validation_tokens: int | None = None
    measure: str = "error"  # what the budget limits (SearchSpec.budget_measure)
    seconds: float | None = None
    job_id: str | None = None
    reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.state == SUCCEEDED and self.ratio is not None

    @property
    def validation_increase(self) -> float | None:
        """How much worse than the upload the trial is on the validation split, in the budget's measure:
        the error's increase, the top-1 agreement lost (the upload agrees with itself fully), or the
        relative output error (the upload's own is 0)."""
        if self.measure == "agreement":
            agreement = self.validation_agreement_after
            return None if agreement is None else 1.0 - agreement
        if self.measure == "output_error":
            return self.validation_output_error_after
        if self.measure == "perplexity":
            after, before = self.validation_perplexity_after, self.validation_perplexity_before
            return None if after is None or before is None else after - before
        if self.validation_error_after is None or self.validation_error_before is None:
            return None
        return self.validation_error_after - self.validation_error_before

    def feasible(self, budget: float | None) -> bool:
        """Within the error budget (a fraction) on the validation split; any successful trial without one."""
        if not self.ok:
            return False
        if budget is None:
            return True
        increase = self.validation_increase
        return increase is not None and increase <= budget + 1e-12

    def to_dict(self) -> dict[str, Any]:
        row = asdict(self)
        row.pop("extra")
        return row

    @classmethod
    def from_metrics(
        cls,
        index: int,
        parameters: Mapping[str, Value],
        state: str,
        metrics: Mapping[str, Any] | None,
        **values: Any,
    ) -> TrialResult:
        """A row from a trial job's metrics.json (None when the trial did not succeed)."""
        metrics = metrics or {}
        totals = metrics.get("totals") or {}
        evaluation = metrics.get("evaluation") or {}
        validation = (metrics.get("search_trial") or {}).get("validation") or {}
        fidelity = (evaluation.get("after") or {}).get("fidelity") or {}
        validation_fidelity = (validation.get("after") or {}).get("fidelity") or {}
        before, after = evaluation.get("before") or {}, evaluation.get("after") or {}
        # a causal LM's trial (lm_trial.py) states its own ratio: the upload against the checkpoint it ships
        ratio = (metrics.get("search_trial") or {}).get("ratio", totals.get("ratio"))
        return cls(
            index=index,
            parameters=dict(parameters),
            state=state,
            ratio=ratio,
            lc_ratio=totals.get("lc_ratio"),
            error_before=(evaluation.get("before") or {}).get("error"),
            error_after=(evaluation.get("after") or {}).get("error"),
            validation_error_before=(validation.get("before") or {}).get("error"),
            validation_error_after=(validation.get("after") or {}).get("error"),
            agreement_after=fidelity.get("top1_agreement"),
            output_error_after=fidelity.get("relative_output_error"),
            validation_agreement_after=validation_fidelity.get("top1_agreement"),
            validation_output_error_after=validation_fidelity.get("relative_output_error"),
            perplexity_before=before.get("perplexity"),
            perplexity_after=after.get("perplexity"),
            validation_perplexity_before=(validation.get("before") or {}).get("perplexity"),
            validation_perplexity_after=(validation.get("after") or {}).get("perplexity"),
            tokens=after.get("tokens"),
            validation_tokens=(validation.get("after") or {}).get("tokens"),
            **values,
        )
