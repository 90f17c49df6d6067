"""A search's plots and its section of report.html, drawn from metrics.json's `search` section alone (the
report knows no method; the search writes the same plots as pareto.png and sensitivity.png):
pareto.png, test error against compression ratio with the front, the uploaded model and the chosen trial;
sensitivity.png, each layer's validation error against the value."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["pareto_png", "search_html", "sensitivity_png"]


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _points(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4f}"


def _y(section: Mapping[str, Any]) -> tuple[Callable[[Mapping[str, Any]], float | None], str]:
    """What the plot's y axis shows (a trial -> value) and its label: the test error; without labels the
    fidelity to the upload (the top-1 agreement lost, in points, or the relative output error)."""
    trials = section.get("trials") or []
    if any(t.get("perplexity_after") is not None for t in trials):  # a causal LM (model.hf)
        return _perplexity_increase, "perplexity increase over the upload (test)"
    if any(t.get("error_after") is not None for t in trials) or not trials:
        return (lambda t: None if t.get("error_after") is None else 100 * t["error_after"]), "test error (%)"
    measure = (section.get("budget") or {}).get("measure")
    if measure == "output_error" or all(t.get("agreement_after") is None for t in trials):
        return (lambda t: t.get("output_error_after")), "relative output error vs the upload (test)"
    return (
        lambda t: None if t.get("agreement_after") is None else 100 * (1 - t["agreement_after"])
    ), "top-1 disagreement with the upload (%, test)"


def _perplexity_increase(t: Mapping[str, Any], prefix: str = "") -> float | None:
    after, before = t.get(f"{prefix}perplexity_after"), t.get(f"{prefix}perplexity_before")
    return None if after is None or before is None else after - before


def _ok(trial: Mapping[str, Any], y: Callable[[Mapping[str, Any]], float | None]) -> bool:
    return trial.get("state") == "succeeded" and bool(trial.get("ratio")) and y(trial) is not None


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


def pareto_png(section: Mapping[str, Any]) -> bytes | None:
    y, ylabel = _y(section)
    ok = [t for t in section.get("trials") or [] if _ok(t, y)]
    if not ok:
        return None
    fig, ax = _figure()
    ax.scatter([t["ratio"] for t in ok], [y(t) for t in ok], s=18, color="#8a9bb0", label="trials")
    by_index = {t["index"]: t for t in ok}
    front = [by_index[i] for i in section.get("pareto") or [] if i in by_index]
    ax.plot([t["ratio"] for t in front], [y(t) for t in front], "o-", color="#1f6feb", label="Pareto front")
    before = next((t["error_before"] for t in ok if t.get("error_before") is not None), None)
    before = 100 * before if before is not None else (0.0 if ylabel != "test error (%)" else None)
    if before is not None:  # without labels the upload is 0 away from itself
        ax.scatter([1.0], [before], marker="*", s=140, color="#d1242f", label="uploaded model", zorder=3)
    best = by_index.get(section.get("best", -1))
    if best is not None:
        ax.scatter(
            [best["ratio"]],
            [y(best)],
            s=160,
            facecolors="none",
            edgecolors="#1a7f37",
            linewidths=2,
            label="chosen (on validation)",
            zorder=4,
        )
    ax.set_xscale("log")
    ax.set_xlabel("compression ratio (stored bits, log scale)")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def sensitivity_png(section: Mapping[str, Any]) -> bytes | None:
    table = section.get("sensitivity")
    if not table or not table.get("layers"):
        return None
    fig, ax = _figure()
    lm = "validation_perplexity_increase" in table  # a causal LM: per decoder layer, in perplexity
    grid = table["validation_perplexity_increase"] if lm else table["validation_error"]
    for layer, row in zip(table["layers"], grid, strict=True):
        scale = 1.0 if lm else 100.0
        points = [(v, scale * e) for v, e in zip(table["values"], row, strict=True) if e is not None]
        if points:
            ax.plot(*zip(*points, strict=True), "o-", label=layer)
    ax.set_xlabel(table.get("step_field") or "value")
    ax.set_ylabel("validation perplexity increase" if lm else "validation error (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def _img(data: bytes | None, title: str) -> str:
    if data is None:
        return ""
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return f'<figure><img alt="{_esc(title)}" src="{uri}"></figure>'


def search_html(metrics: Mapping[str, Any] | None) -> str:
    """The trials table, the budget verdict and the plots; '' when the job is not a search."""
    section = (metrics or {}).get("search")
    if not isinstance(section, Mapping) or "trials" not in section:
        return ""
    trials = list(section["trials"])
    paths = list(dict.fromkeys(p for t in trials for p in (t.get("parameters") or {})))
    front, best = set(section.get("pareto") or []), section.get("best")
    fidelity = any(
        t.get("agreement_after") is not None or t.get("output_error_after") is not None for t in trials
    )
    lm = any(t.get("perplexity_after") is not None for t in trials)  # a causal LM: perplexity, not error
    columns = [
        "#",
        "label",
        *paths,
        "state",
        "ratio",
        *(["test ppl increase", "validation ppl increase"] if lm else ["test error", "validation error"]),
        *(["test agreement", "validation agreement", "test output error"] if fidelity else []),
        "seconds",
        "front",
        "chosen",
    ]
    head = "".join(f"<th>{_esc(c)}</th>" for c in columns)
    body = []
    for t in trials:
        state = t.get("state")
        if state != "succeeded" and t.get("reason"):
            state = f"{state}: {t['reason']}"
        cells = [
            t["index"],
            t.get("label") or "",
            *((t.get("parameters") or {}).get(p, "") for p in paths),
            state,
            "-" if not t.get("ratio") else f"{t['ratio']:.2f}×",
            *(
                [_points(_perplexity_increase(t)), _points(_perplexity_increase(t, "validation_"))]
                if lm
                else [_pct(t.get("error_after")), _pct(t.get("validation_error_after"))]
            ),
            *(
                [
                    _pct(t.get("agreement_after")),
                    _pct(t.get("validation_agreement_after")),
                    "-" if t.get("output_error_after") is None else f"{t['output_error_after']:.4f}",
                ]
                if fidelity
                else []
            ),
            "-" if t.get("seconds") is None else f"{t['seconds']:.1f}",
            "★" if t["index"] in front else "",
            "✓" if t["index"] == best else "",
        ]
        body.append("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in cells) + "</tr>")
    budget = section.get("budget") or {}
    verdict = ""
    if budget and budget.get("measure") == "perplexity":
        verdict = f'<p class="note">Perplexity budget: {_esc(budget.get("message", ""))}.</p>'
    elif budget and budget.get("measure", "error") != "error":
        verdict = f'<p class="note">Fidelity budget: {_esc(budget.get("message", ""))}.</p>'
    elif budget:
        verdict = (
            f'<p class="note">Error budget: +{budget.get("max_error_increase")} points on the validation '
            f"split; {_esc(budget.get('message', ''))}.</p>"
        )
    reference = next((t["error_before"] for t in trials if t.get("error_before") is not None), None)
    upload = _pct(reference)
    if lm:
        first: Mapping[str, Any] = next((t for t in trials if t.get("perplexity_before") is not None), {})
        upload = f"perplexity {first.get('perplexity_before', 0.0):.4f} on {first.get('tokens')} test tokens"
    return (
        f"<h2>Search ({_esc(section.get('mode'))}, {len(trials)} trials)</h2>"
        f'<p class="note">Chosen on the validation split held out of the training data; errors shown are on '
        f"the test split (uploaded model: {upload}). ★ the Pareto front (no other trial is more "
        f"compressed and at most as wrong); ✓ the chosen trial.</p>{verdict}"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        + _img(pareto_png(section), "test error against compression ratio")
        + _img(sensitivity_png(section), "validation error per layer against the value")
    )
