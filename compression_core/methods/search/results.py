"""The search's outcome: the chosen trial, the `search` section of metrics.json, search.csv, and the plots
(pareto.png: test error against compression ratio with the front and the reference; sensitivity.png)."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from compression_core.methods.search import lm_sensitivity, sensitivity
from compression_core.methods.search.pareto import pareto_front
from compression_core.methods.search.spec import SearchMode, SearchSpec
from compression_core.methods.search.trials import TrialResult

__all__ = ["choose_best", "search_csv", "search_section", "write_search_files"]

BUDGET_FIELDS = {
    "agreement": "min_top1_agreement",
    "output_error": "max_relative_output_error",
    "perplexity": "max_perplexity_increase",
}

log = logging.getLogger(__name__)


def choose_best(search: SearchSpec, trials: Sequence[TrialResult]) -> tuple[int | None, bool | None]:
    """(index of the chosen trial, whether it meets the budget; None without one). Chosen on the
    validation split: the most compressed trial within budget, else the least wrong one."""
    ok = [
        t
        for t in trials
        if t.ok and (t.validation_increase is not None or t.validation_error_after is not None)
    ]
    if not ok:
        return None, None
    if search.mode is SearchMode.sensitivity:
        suggested = [t for t in ok if t.label == sensitivity.SUGGESTED]
        if suggested:
            return suggested[0].index, suggested[0].feasible(sensitivity.target(search))
    budget = sensitivity.target(search) if search.mode is SearchMode.sensitivity else search.budget_fraction
    if budget is not None:
        within = [t for t in ok if t.feasible(budget)]
        if within:
            best = max(within, key=lambda t: (t.ratio or 0.0, -(t.validation_error_after or 0.0)))
            return best.index, True
    least_wrong = min(
        ok,
        key=lambda t: (
            t.validation_increase if t.validation_increase is not None else t.validation_error_after or 0.0,
            -(t.ratio or 0.0),
        ),
    )
    return least_wrong.index, (False if budget is not None else None)


def search_section(
    search: SearchSpec,
    trials: Sequence[TrialResult],
    *,
    trace: Sequence[dict[str, Any]] = (),
    note: str = "",
    base: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`base`: the search's whole spec (a causal LM's sensitivity table names the layers kept float)."""
    best, met = choose_best(search, trials)
    section: dict[str, Any] = {
        "mode": str(search.mode),
        "parameters": list(search.parameters),
        "trials": [t.to_dict() for t in trials],
        "pareto": pareto_front(trials),
        "pareto_validation": pareto_front(trials, validation=True),
        "best": best,
        "trace": list(trace),
        "validation": search.validation.model_dump(),
        "chosen_on": "validation split (held out of the training split); errors reported on the test split",
        "note": note,
        "counts": {
            "trials": len(trials),
            "succeeded": sum(t.ok for t in trials),
            "failed": sum(t.state == "failed" for t in trials),
        },
    }
    if search.mode is SearchMode.sensitivity and search.budget_measure == "perplexity":
        section["sensitivity"] = lm_sensitivity.table(search, base, trials)
    elif search.mode is SearchMode.sensitivity:
        section["sensitivity"] = sensitivity.table(search, trials)
    budget = sensitivity.target(search) if search.mode is SearchMode.sensitivity else search.budget_fraction
    if budget is not None:
        measure = search.budget_measure
        section["budget"] = {
            "measure": measure,
            "met": bool(met),
            "message": (
                f"a trial meets the budget ({search.budget_text()} on the validation split)"
                if met
                else f"no trial met the budget ({search.budget_text()}); the least wrong trial is returned"
            ),
        }
        if measure == "error":
            section["budget"]["max_error_increase"] = 100 * budget
        else:
            section["budget"][BUDGET_FIELDS[measure]] = getattr(search, BUDGET_FIELDS[measure])
    return section


def search_csv(trials: Sequence[TrialResult], section: dict[str, Any]) -> str:
    paths = list(dict.fromkeys(p for t in trials for p in t.parameters))
    front, best = set(section.get("pareto", [])), section.get("best")
    columns = [
        "index",
        "label",
        "state",
        *paths,
        "ratio",
        "lc_ratio",
        "error_before",
        "error_after",
        "validation_error_before",
        "validation_error_after",
        "agreement_after",
        "output_error_after",
        "validation_agreement_after",
        "validation_output_error_after",
        "perplexity_before",
        "perplexity_after",
        "validation_perplexity_before",
        "validation_perplexity_after",
        "tokens",
        "validation_tokens",
        "seconds",
        "job_id",
        "pareto",
        "best",
        "reason",
    ]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for t in trials:
        row = t.to_dict()
        writer.writerow(
            [row["index"], row["label"] or "", row["state"], *(t.parameters.get(p, "") for p in paths)]
            + [_cell(row[c]) for c in columns[3 + len(paths) : -4]]
            + [row["job_id"] or "", int(t.index in front), int(t.index == best), row["reason"] or ""]
        )
    return out.getvalue()


def _cell(value: Any) -> str:
    return "" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)


def write_search_files(out_dir: Path, trials: Sequence[TrialResult], section: dict[str, Any]) -> list[str]:
    """search.csv, pareto.png and sensitivity.png (when there is something to draw) into out_dir."""
    from compression_core.io import atomic_write_bytes
    from compression_core.report.search import pareto_png, sensitivity_png

    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_dir / "search.csv", search_csv(trials, section).encode())
    written = ["search.csv"]
    for name, draw in (("pareto.png", pareto_png), ("sensitivity.png", sensitivity_png)):
        data = draw(section)
        if data is not None:
            atomic_write_bytes(out_dir / name, data)
            written.append(name)
    return written
