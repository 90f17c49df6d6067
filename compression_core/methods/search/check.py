"""The up-front check of a search, run by the Spec's validator: every trial's spec must be valid before
anything is queued. Imports no torch, so the API validates a search as cheaply as any spec."""

from __future__ import annotations

import logging
from typing import Any

from compression_core.methods.search import lm_sensitivity, sensitivity
from compression_core.methods.search.paths import SearchPathError, validate_trials
from compression_core.methods.search.planner import budget_probe_points, grid_points
from compression_core.methods.search.spec import SearchMode, SearchSpec

__all__ = ["check_search"]

log = logging.getLogger(__name__)


MAX_CHECK_WORK = 100_000  # trial specs validated x (rules + name patterns + 1): about 1.5 s of one core


def distinct(assignments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each assignment once (a grid whose lists repeat a value repeats its points)."""
    seen: dict[tuple[tuple[str, Any], ...], dict[str, Any]] = {}
    for assignment in assignments:
        seen.setdefault(tuple(sorted(assignment.items())), assignment)
    return list(seen.values())


def check_search(spec: Any) -> None:
    """Every trial's spec is valid (a SearchPathError naming the path otherwise), before anything runs.
    The work is bounded: a budget search validates a sample of what it can probe, each distinct trial
    spec is validated once, and more than MAX_CHECK_WORK is refused before a trial spec is built."""
    search: SearchSpec = spec.method("search")
    if spec.model is None or spec.data is None:
        raise ValueError("search: a search needs `model` and `data` (each trial is measured on data)")
    hf = bool(getattr(spec.model, "hf", False))
    if search.max_perplexity_increase is not None and not hf:
        raise ValueError(
            "search.max_perplexity_increase: a perplexity budget is for a Hugging Face causal LM "
            '("model": {"hf": true}); state this model\'s budget as max_error_increase, min_top1_agreement '
            "or max_relative_output_error"
        )
    if hf and search.budget_measure != "perplexity" and search.budget_fraction is not None:
        raise ValueError(
            f"search: on a Hugging Face model the budget is `max_perplexity_increase` (points of perplexity "
            f"on the validation token ids), not {search.budget_measure}"
        )
    if hf and search.mode is SearchMode.sensitivity:
        lm_sensitivity.validate(spec.model_dump(mode="json"), search)
        return
    if search.mode is SearchMode.sensitivity:
        sensitivity.validate(spec.model_dump(mode="json"), search)
        return
    points = distinct(grid_points(search) if search.mode is SearchMode.grid else budget_probe_points(search))
    rules = list(spec.rules or [])
    weight = len(rules) + sum(len(rule.select.patterns) for rule in rules) + 1
    if len(points) * weight > MAX_CHECK_WORK:
        raise SearchPathError(
            "parameters",
            f"{len(points)} trial specs of {len(rules)} rules (weight {weight} with their name patterns) are "
            f"too much to validate before queueing ({len(points) * weight:,} > {MAX_CHECK_WORK:,}); use "
            "fewer grid points or fewer rules",
            loc=("search",),
        )
    validate_trials(spec.model_dump(mode="json"), points)
