"""The up-front check of a search, run by the Spec's validator: every trial's spec must be valid before
anything is queued. Imports no torch, so the API validates a search as cheaply as any spec."""

from __future__ import annotations

import logging
from typing import Any

from compression_core.methods.search import sensitivity
from compression_core.methods.search.paths import validate_trials
from compression_core.methods.search.planner import budget_probe_points, grid_points
from compression_core.methods.search.spec import SearchMode, SearchSpec

__all__ = ["check_search"]

log = logging.getLogger(__name__)


def check_search(spec: Any) -> None:
    """Every trial's spec is valid (a SearchPathError naming the path otherwise), before anything runs."""
    search: SearchSpec = spec.method("search")
    if spec.model is None or spec.data is None:
        raise ValueError("search: a search needs `model` and `data` (each trial is measured on data)")
    base = spec.model_dump(mode="json")
    if search.mode is SearchMode.grid:
        validate_trials(base, grid_points(search))
    elif search.mode is SearchMode.budget:
        validate_trials(base, budget_probe_points(search))
    else:
        sensitivity.validate(base, search)
