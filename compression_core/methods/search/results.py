"""The search's outcome: the chosen trial, the `search` section of metrics.json, search.csv, and the plots
(pareto.png: test error against compression ratio with the front and the reference; sensitivity.png)."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from compression_core.methods.search import sensitivity
from compression_core.methods.search.pareto import pareto_front
from compression_core.methods.search.spec import SearchMode, SearchSpec
from compression_core.methods.search.trials import TrialResult

__all__ = ["choose_best", "pareto_png", "search_csv", "search_section", "sensitivity_png"]

log = logging.getLogger(__name__)


def choose_best(search: SearchSpec, trials: Sequence[TrialResult]) -> tuple[int | None, bool | None]:
    """(index of the chosen trial, whether it meets the budget; None without one). Chosen on the
    validation split: the most compressed trial within budget, else the least wrong one."""
    ok = [t for t in trials if t.ok and t.validation_error_after is not None]
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
    least_wrong = min(ok, key=lambda t: (t.validation_error_after or 0.0, -(t.ratio or 0.0)))
    return least_wrong.index, (False if budget is not None else None)


def search_section(
    search: SearchSpec,
    trials: Sequence[TrialResult],
    *,
    trace: Sequence[dict[str, Any]] = (),
    note: str = "",
) -> dict[str, Any]:
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
    if search.mode is SearchMode.sensitivity:
        section["sensitivity"] = sensitivity.table(search, trials)
    budget = sensitivity.target(search) if search.mode is SearchMode.sensitivity else search.budget_fraction
    if budget is not None:
        section["budget"] = {
            "max_error_increase": 100 * budget,
            "met": bool(met),
            "message": (
                "a trial meets the budget"
                if met
                else "no trial met the error budget; the least wrong trial is returned"
            ),
        }
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


def _figure() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(7, 4.5), dpi=100)


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def pareto_png(trials: Sequence[TrialResult], section: dict[str, Any]) -> bytes | None:
    """Test error (%) against stored-bits ratio: every trial, the front as a line, the reference and the
    chosen trial marked."""
    ok = [t for t in trials if t.ok and t.error_after is not None and t.ratio]
    if not ok:
        return None
    fig, ax = _figure()
    ax.scatter(
        [t.ratio for t in ok], [100 * (t.error_after or 0) for t in ok], s=18, color="#8a9bb0", label="trials"
    )
    by_index = {t.index: t for t in ok}
    front = [by_index[i] for i in section.get("pareto", []) if i in by_index]
    ax.plot(
        [t.ratio for t in front],
        [100 * (t.error_after or 0) for t in front],
        "o-",
        color="#1f6feb",
        label="Pareto front",
    )
    before = next((t.error_before for t in ok if t.error_before is not None), None)
    if before is not None:
        ax.scatter(
            [1.0], [100 * before], marker="*", s=140, color="#d1242f", label="uploaded model", zorder=3
        )
    best = by_index.get(section.get("best", -1))
    if best is not None:
        ax.scatter(
            [best.ratio],
            [100 * (best.error_after or 0)],
            s=160,
            facecolors="none",
            edgecolors="#1a7f37",
            linewidths=2,
            label="chosen (on validation)",
            zorder=4,
        )
    ax.set_xscale("log")
    ax.set_xlabel("compression ratio (stored bits, log scale)")
    ax.set_ylabel("test error (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def sensitivity_png(section: dict[str, Any]) -> bytes | None:
    """Validation error (%) of each layer alone against the value (Han et al.'s sensitivity figure)."""
    table = section.get("sensitivity")
    if not table or not table.get("layers"):
        return None
    fig, ax = _figure()
    for layer, row in zip(table["layers"], table["validation_error"], strict=True):
        points = [(v, 100 * e) for v, e in zip(table["values"], row, strict=True) if e is not None]
        if points:
            ax.plot(*zip(*points, strict=True), "o-", label=layer)
    ax.set_xlabel(table.get("step_field") or "value")
    ax.set_ylabel("validation error (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def write_search_files(out_dir: Path, trials: Sequence[TrialResult], section: dict[str, Any]) -> list[str]:
    """search.csv, pareto.png and sensitivity.png (when there is something to draw) into out_dir."""
    from compression_core.io import atomic_write_bytes

    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_dir / "search.csv", search_csv(trials, section).encode())
    written = ["search.csv"]
    for name, draw in (
        ("pareto.png", lambda: pareto_png(trials, section)),
        ("sensitivity.png", lambda: sensitivity_png(section)),
    ):
        data = draw()
        if data is not None:
            atomic_write_bytes(out_dir / name, data)
            written.append(name)
    return written
