"""The search section of report.html: the trials table, the budget verdict and the plots (pareto.png,
sensitivity.png), drawn from metrics.json's `search` section alone."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from typing import Any

__all__ = ["search_html"]


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _img(data: bytes | None, title: str) -> str:
    if data is None:
        return ""
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return f'<figure><img alt="{_esc(title)}" src="{uri}"></figure>'


def search_html(metrics: Mapping[str, Any] | None) -> str:
    """'' when the job is not a search."""
    section = (metrics or {}).get("search")
    if not isinstance(section, Mapping) or "trials" not in section:
        return ""
    from compression_core.methods.search.results import pareto_png, sensitivity_png
    from compression_core.methods.search.trials import TrialResult

    trials = [TrialResult(**row) for row in section["trials"]]
    paths = list(dict.fromkeys(p for t in trials for p in t.parameters))
    front, best = set(section.get("pareto") or []), section.get("best")
    head = "".join(
        f"<th>{_esc(c)}</th>"
        for c in [
            "#",
            "label",
            *paths,
            "state",
            "ratio",
            "test error",
            "validation error",
            "seconds",
            "front",
            "chosen",
        ]
    )
    body = []
    for t in trials:
        cells = [
            t.index,
            t.label or "",
            *(t.parameters.get(p, "") for p in paths),
            t.state if t.reason is None or t.ok else f"{t.state}: {t.reason}",
            "-" if t.ratio is None else f"{t.ratio:.2f}×",
            _pct(t.error_after),
            _pct(t.validation_error_after),
            "-" if t.seconds is None else f"{t.seconds:.1f}",
            "★" if t.index in front else "",
            "✓" if t.index == best else "",
        ]
        body.append("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in cells) + "</tr>")
    budget = section.get("budget") or {}
    verdict = ""
    if budget:
        verdict = (
            f'<p class="note">Error budget: +{budget.get("max_error_increase")} points on the validation '
            "split; "
            f"{_esc(budget.get('message', ''))}.</p>"
        )
    reference = next((t.error_before for t in trials if t.error_before is not None), None)
    return (
        f"<h2>Search ({_esc(section.get('mode'))}, {len(trials)} trials)</h2>"
        f'<p class="note">Chosen on the validation split held out of the training data; errors shown are on '
        f"the test split (uploaded model: {_pct(reference)}). ★ the Pareto front (no other trial is more "
        f"compressed and at most as wrong); ✓ the chosen trial.</p>{verdict}"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        + _img(pareto_png(trials, dict(section)), "test error against compression ratio")
        + _img(sensitivity_png(dict(section)), "validation error per layer against the value")
    )
