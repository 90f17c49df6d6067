"""`render_report`: one self-contained HTML page (inline CSS, images as data URIs, no scripts) plus PNGs.

A person opens report.html offline, from an artifact download or a CI page; nothing in it reaches the network.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from compression_core.report import plots
from compression_core.report.deployment import deployment_html, latency_chart
from compression_core.report.headline import Headline, headline, human_bytes, lookup
from compression_core.report.layers import LayerRow, layer_rows
from compression_core.report.search import search_html

if TYPE_CHECKING:
    import torch

MAX_TABLE_ROWS = 500

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; margin: 0;
       background: #f6f7f9; }
main { max-width: 1180px; margin: 0 auto; padding: 24px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 10px; }
.sub { color: #666; margin-bottom: 18px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { background: #fff; border: 1px solid #dde1e6; border-radius: 8px; padding: 12px 16px;
        min-width: 150px; }
.card .k { color: #666; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .v { font-size: 22px; font-weight: 600; }
table { border-collapse: collapse; background: #fff; width: 100%; font-size: 13px; }
th, td { border-bottom: 1px solid #e4e7eb; padding: 5px 8px; text-align: right; white-space: nowrap; }
th { background: #eef1f4; position: sticky; top: 0; }
td:first-child, th:first-child, td.l, th.l { text-align: left; }
td.name { font-family: ui-monospace, Menlo, Consolas, monospace; }
figure { background: #fff; border: 1px solid #dde1e6; border-radius: 8px; margin: 0 0 16px; padding: 8px; }
figure img { max-width: 100%; height: auto; display: block; margin: 0 auto; }
.note { color: #666; font-size: 12px; }
.warning { background: #fff4e5; border: 1px solid #f0b849; border-radius: 8px; padding: 8px 12px; }
"""

_PLOT_TITLES = {
    "weights_hist.png": "Weight distributions",
    "bits_per_layer.png": "Storage per layer",
    "sparsity_per_layer.png": "Sparsity per layer",
    "history.png": "Training history",
    "latency.png": "Inference latency",
}


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float | int | None, fmt: str = "{:,.0f}") -> str:
    return "-" if value is None else fmt.format(value)


def _cards(h: Headline, metrics: Mapping[str, Any] | None) -> str:
    cards = [
        ("compression ratio", f"{h.ratio:.2f}×" if h.ratio else "-"),
        ("size before", human_bytes(h.size_before_bytes)),
        ("size after", human_bytes(h.size_after_bytes)),
    ]
    if h.lc_ratio is not None:
        cards.append(("LC ratio (weights)", f"{h.lc_ratio:.2f}×"))
    if h.params_total is not None:
        nz = f"{h.params_nonzero:,.0f} / " if h.params_nonzero is not None else ""
        cards.append(("non-zero / params", f"{nz}{h.params_total:,.0f}"))
    if h.error_before is not None:
        cards.append(("error before", f"{100 * h.error_before:.2f}%"))
    if h.error_after is not None:
        cards.append(("error after", f"{100 * h.error_after:.2f}%"))
    if h.error_increase is not None:
        cards.append(("error change", f"{100 * h.error_increase:+.2f} pts"))
    if h.agreement_after is not None:
        cards.append(("top-1 agreement with the upload", f"{100 * h.agreement_after:.2f}%"))
    if h.output_error_after is not None:
        cards.append(("relative output error", f"{h.output_error_after:.4f}"))
    body = "".join(
        f'<div class="card"><div class="k">{_esc(k)}</div><div class="v">{_esc(v)}</div></div>'
        for k, v in cards
    )
    samples = ""
    if h.eval_samples:
        data = lookup(metrics, ("evaluation", "data"))
        where = ""
        if isinstance(data, Mapping) and data.get("name"):
            split = f", {data['evaluated_on']} split" if data.get("evaluated_on") else ""
            where = f" of {data['name']}{split}"
        measured = "Errors" if h.error_after is not None else "Fidelity to the uploaded model"
        samples = f'<p class="note">{measured} measured on {h.eval_samples:,} samples{_esc(where)}.</p>'
        if h.agreement_after is not None or h.output_error_after is not None:
            samples += (
                '<p class="note">Fidelity: relative output error = ‖f<sub>c</sub>(X) − f<sub>0</sub>(X)‖ / '
                "‖f<sub>0</sub>(X)‖ over the split; top-1 agreement = share of samples whose top class is "
                "the uploaded model's.</p>"
            )

    return f'<div class="cards">{body}</div>{samples}{_warnings(metrics)}'


def _warnings(metrics: Mapping[str, Any] | None) -> str:
    """What the job wants its reader to know before trusting the numbers (e.g. a carved validation split)."""
    warnings = lookup(metrics, ("evaluation", "data", "warnings"))
    if not isinstance(warnings, list):
        return ""
    return "".join(f'<p class="warning">Warning: {_esc(w)}.</p>' for w in warnings if isinstance(w, str))


def _table(rows: list[LayerRow]) -> str:
    columns = (
        "params",
        "non-zero",
        "sparsity",
        "bits before",
        "bits after",
        "bits/weight",
        "ratio",
        "rel. error",
    )
    head = '<th>layer</th><th class="l">method</th><th>shape</th>' + "".join(f"<th>{c}</th>" for c in columns)
    body = []
    for r in rows[:MAX_TABLE_ROWS]:
        shape = "×".join(str(s) for s in r.shape) if r.shape else "-"
        cells = [
            f'<td class="name">{_esc(r.name)}</td>',
            f'<td class="l">{_esc(r.method or "-")}</td>',
            f"<td>{_esc(shape)}</td>",
            f"<td>{_num(r.params)}</td>",
            f"<td>{_num(r.nonzero)}</td>",
            f"<td>{_num(None if r.sparsity is None else 100 * r.sparsity, '{:.1f}%')}</td>",
            f"<td>{_num(r.bits_before)}</td>",
            f"<td>{_num(r.bits_after)}</td>",
            f"<td>{_num(r.bits_per_weight, '{:.2f}')}</td>",
            f"<td>{_num(r.ratio, '{:.1f}×')}</td>",
            f"<td>{_num(r.rel_error, '{:.4f}')}</td>",
        ]
        body.append(f"<tr>{''.join(cells)}</tr>")
    more = ""
    if len(rows) > MAX_TABLE_ROWS:
        more = f'<p class="note">{len(rows) - MAX_TABLE_ROWS} more layers in metrics.json.</p>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"


def _figures(pngs: Mapping[str, bytes]) -> str:
    out = []
    for name, data in pngs.items():
        uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        title = _PLOT_TITLES.get(name, name)
        out.append(f'<figure><img alt="{_esc(title)}" src="{uri}"></figure>')
    return "".join(out)


def _history(history: Any, metrics: Mapping[str, Any] | None) -> Any:
    if history:
        return history
    return lookup(metrics, ("history",), ("training", "history"), ("finetune", "history"))


def render_report(
    metrics: Mapping[str, Any] | None,
    before: Mapping[str, torch.Tensor] | None = None,
    after: Mapping[str, torch.Tensor] | None = None,
    history: Any = None,
    *,
    title: str = "Compression report",
) -> tuple[str, dict[str, bytes]]:
    """(report.html text, {png file name: bytes}); every input may be partial or missing."""
    rows = layer_rows(metrics, before, after)
    shown = plots.plotted_layers(rows)
    candidates = {
        "weights_hist.png": lambda: plots.weight_histograms(before, after, [r.name for r in shown]),
        "bits_per_layer.png": lambda: plots.bits_per_layer(shown),
        "sparsity_per_layer.png": lambda: plots.sparsity_per_layer(shown),
        "history.png": lambda: plots.history_curves(_history(history, metrics)),
        "latency.png": lambda: latency_chart(metrics),  # deploy (issue 12)
    }
    pngs = {name: data for name, make in candidates.items() if (data := make()) is not None}
    capped = ""
    if len(shown) < len(rows):
        capped = f'<p class="note">Plots show the {len(shown)} largest of {len(rows)} layers.</p>'
    spec = lookup(metrics, ("spec",))
    spec_html = (
        f"<h2>Spec</h2><pre>{_esc(json.dumps(spec, indent=2, default=str))}</pre>" if spec is not None else ""
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(title)}</title><style>{_CSS}</style></head>
<body><main>
<h1>{_esc(title)}</h1>
<div class="sub">{len(rows)} tensors</div>
{_cards(headline(metrics), metrics)}
{deployment_html(metrics)}
{search_html(metrics)}
<h2>Per-layer</h2>
{_table(rows)}
<h2>Plots</h2>
{capped}{_figures(pngs)}
{spec_html}
</main></body></html>
"""
    return page, pngs
