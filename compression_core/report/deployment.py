"""The report's deployment section: seed 003's table (criteria as rows, one column per artifact and
runtime) and a bar chart of latency per sample at batch 1 and at the throughput batch."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from compression_core.report.headline import human_bytes, lookup

__all__ = ["deployment_html", "latency_chart"]


def _rows(metrics: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    rows = lookup(metrics, ("deployment", "table", "rows"))
    return [r for r in rows if isinstance(r, Mapping)] if isinstance(rows, list) else []


def _pct(value: Any) -> str:
    return "-" if not isinstance(value, int | float) else f"{100 * value:.2f}%"


def _ms(value: Any) -> str:
    return "-" if not isinstance(value, int | float) else f"{value:.3f} ms"


def deployment_html(metrics: Mapping[str, Any] | None) -> str:
    """The seed-003 table as HTML ('' when the job measured no deployment)."""
    rows = _rows(metrics)
    if not rows:
        return ""
    table = lookup(metrics, ("deployment", "table")) or {}
    threads = table.get("threads", {})
    batch = table.get("throughput_batch", "?")

    def lat(row: Mapping[str, Any], which: str, key: str) -> Any:
        return lookup(row, ("latency", which, key))

    criteria: Sequence[tuple[str, Any]] = (
        ("Parameters", lambda r: f"{r['params']:,}"),
        ("File size", lambda r: human_bytes(r.get("file_bytes"))),
        ("Top-1 error", lambda r: _pct(lookup(r, ("errors", "top1_error")))),
        ("Top-5 error", lambda r: _pct(lookup(r, ("errors", "top5_error")))),
        ("Runtime memory (peak)", lambda r: human_bytes(r.get("peak_memory_bytes"))),
        ("Time / sample, batch 1 (p50)", lambda r: _ms(lat(r, "batch1", "p50_ms_per_sample"))),
        ("Time / sample, batch 1 (p90)", lambda r: _ms(lat(r, "batch1", "p90_ms_per_sample"))),
        (f"Time / batch of {batch} (p50)", lambda r: _ms(lat(r, "throughput", "p50_ms"))),
        (f"Time / sample, batch {batch} (p50)", lambda r: _ms(lat(r, "throughput", "p50_ms_per_sample"))),
    )
    head = "".join(
        f"<th>{html.escape(str(r['name']))}<br><small>{html.escape(str(r['runtime']))}</small></th>"
        for r in rows
    )
    body = "".join(
        f"<tr><td>{html.escape(label)}</td>"
        + "".join(f"<td>{html.escape(cell(r))}</td>" for r in rows)
        + "</tr>"
        for label, cell in criteria
    )
    samples = lookup(rows[0], ("errors", "samples"))
    note = (
        f"Device {html.escape(str(table.get('device', 'cpu')))}; PyTorch and onnxruntime with "
        f"{html.escape(str(threads.get('pytorch_intra_op', '?')))} intra-op thread(s); memory: "
        f"{html.escape(str(table.get('memory_method', '')))}"
        + (f"; errors on {samples} test samples" if samples else "; no data: errors not measured")
    )
    return (
        f"<h2>Deployment</h2><table><thead><tr><th></th>{head}</tr></thead><tbody>{body}</tbody></table>"
        f'<p class="note">{note}</p>'
    )


def latency_chart(metrics: Mapping[str, Any] | None) -> bytes | None:
    """Latency per sample (p50) of each artifact and runtime, at batch 1 and at the throughput batch."""
    rows = _rows(metrics)
    if not rows:
        return None
    from compression_core.report.plots import AFTER_COLOR, BEFORE_COLOR, _figure, _png

    fig = _figure(max(6.0, 1.3 * len(rows) + 2), 3.8)
    ax = fig.subplots()
    x = [float(i) for i in range(len(rows))]
    one = [lookup(r, ("latency", "batch1", "p50_ms_per_sample")) or 0.0 for r in rows]
    many = [lookup(r, ("latency", "throughput", "p50_ms_per_sample")) or 0.0 for r in rows]
    batch = lookup(metrics, ("deployment", "table", "throughput_batch"))
    ax.bar([i - 0.2 for i in x], one, 0.4, label="batch 1", color=BEFORE_COLOR)
    ax.bar([i + 0.2 for i in x], many, 0.4, label=f"batch {batch}", color=AFTER_COLOR)
    ax.set_ylabel("ms per sample (p50)")
    ax.set_xticks(x, [f"{r['name']}\n{r['runtime']}" for r in rows], fontsize=8)
    ax.set_title("Inference latency", fontsize=11)
    ax.legend()
    return _png(fig)
