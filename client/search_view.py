"""What `mcs submit --wait` prints for a search job: its Pareto front, and whether the budget was met.
Reads only the job's `metrics.search` section (the client needs no library)."""

from __future__ import annotations

from typing import Any

__all__ = ["budget_missed", "front_table"]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def front_table(metrics: dict[str, Any] | None) -> Any:
    """A rich Table of the front (test error against ratio; the chosen trial marked), or None."""
    section = (metrics or {}).get("search")
    if not isinstance(section, dict) or not section.get("trials"):
        return None
    from rich.table import Table

    trials = {t["index"]: t for t in section["trials"]}
    paths = list(dict.fromkeys(p for t in section["trials"] for p in (t.get("parameters") or {})))
    counts = section.get("counts") or {}
    table = Table(
        title=f"search ({section.get('mode')}): Pareto front of {counts.get('trials', len(trials))} trials"
    )
    # without labels the trials carry fidelity to the upload instead of errors
    fidelity = all(t.get("error_after") is None for t in section["trials"]) and any(
        t.get("agreement_after") is not None or t.get("output_error_after") is not None
        for t in section["trials"]
    )
    measured = (
        ["test agreement", "validation agreement", "test output error"]
        if fidelity
        else ["test error", "validation error"]
    )
    for column in ["#", "label", *paths, "ratio", *measured, "chosen"]:
        table.add_column(column)
    for index in section.get("pareto") or []:
        t = trials[index]
        cells = (
            [
                _pct(t.get("agreement_after")),
                _pct(t.get("validation_agreement_after")),
                "-" if t.get("output_error_after") is None else f"{t['output_error_after']:.4f}",
            ]
            if fidelity
            else [_pct(t.get("error_after")), _pct(t.get("validation_error_after"))]
        )
        table.add_row(
            str(index),
            t.get("label") or "",
            *(str((t.get("parameters") or {}).get(p, "")) for p in paths),
            f"{t['ratio']:.2f}x" if t.get("ratio") else "-",
            *cells,
            "yes" if index == section.get("best") else "",
        )
    return table


def budget_missed(metrics: dict[str, Any] | None) -> str | None:
    """The message for exit 6 when a search had a budget that no trial met."""
    budget = ((metrics or {}).get("search") or {}).get("budget")
    if isinstance(budget, dict) and budget.get("met") is False:
        if budget.get("min_top1_agreement") is not None:
            stated = f"budget: top-1 agreement with the upload at least {budget['min_top1_agreement']}"
        elif budget.get("max_relative_output_error") is not None:
            stated = f"budget: relative output error at most {budget['max_relative_output_error']}"
        else:
            stated = f"error budget +{budget.get('max_error_increase')} points"
        return f"no trial of the search met its {stated}; the least wrong trial was returned"
    return None
