"""The report's figures as PNG bytes (matplotlib's object API on Agg: no pyplot state, no display needed).

Kept cheap: at most `MAX_LAYERS` layers are drawn (the largest ones), and histograms use at most
`MAX_SAMPLES` evenly strided non-zero weights per layer.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from compression_core.report.layers import LayerRow

if TYPE_CHECKING:
    import numpy as np
    import torch
    from matplotlib.figure import Figure

MAX_LAYERS = 12
MAX_SAMPLES = 100_000
BEFORE_COLOR = "#7f8c8d"
AFTER_COLOR = "#c0392b"


def _figure(width: float, height: float, layout: Literal["constrained"] | None = "constrained") -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout=layout)


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def plotted_layers(rows: Sequence[LayerRow], limit: int = MAX_LAYERS) -> list[LayerRow]:
    """The `limit` largest layers, in model order (small biases say little and crowd the plots)."""
    biggest = sorted(rows, key=lambda r: -(r.params or 0))[:limit]
    keep = {id(r) for r in biggest}
    return [r for r in rows if id(r) in keep]


def _short(name: str, width: int = 28) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1) :]


def _nonzero_sample(tensor: torch.Tensor, limit: int = MAX_SAMPLES) -> np.ndarray:
    flat = tensor.detach().reshape(-1).float().cpu()
    flat = flat[flat != 0]
    step = max(1, math.ceil(flat.numel() / limit))
    return flat[::step].numpy()


def weight_histograms(
    before: Mapping[str, torch.Tensor] | None, after: Mapping[str, torch.Tensor] | None, names: Sequence[str]
) -> bytes | None:
    """Histogram of non-zero weights per layer (log counts), before in grey and after in red."""
    names = [n for n in names if (before and n in before) or (after and n in after)]
    if not names:
        return None
    cols = min(3, len(names))
    nrows = math.ceil(len(names) / cols)
    from matplotlib.ticker import LogLocator, NullLocator

    # a fixed grid instead of constrained layout, and no minor log ticks: layout and ticks dominate the cost
    height = 2.6 * nrows + 0.8
    fig = _figure(4.0 * cols, height, layout=None)
    fig.subplots_adjust(
        left=0.07, right=0.98, bottom=0.4 / height, top=1 - 0.8 / height, hspace=0.45, wspace=0.25
    )
    axes = fig.subplots(nrows, cols, squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        samples = []
        if before and name in before:
            samples.append(("before", _nonzero_sample(before[name]), BEFORE_COLOR))
        if after and name in after:
            samples.append(("after", _nonzero_sample(after[name]), AFTER_COLOR))
        values = [s for _, s, _ in samples if s.size]
        if values:
            import numpy as np

            lo = min(float(v.min()) for v in values)
            hi = max(float(v.max()) for v in values)
            edges = np.linspace(lo, hi, 81) if hi > lo else np.array([lo - 0.5, lo + 0.5])
            for label, data, color in samples:
                if data.size:
                    counts, _ = np.histogram(data, bins=edges)
                    # one filled step polygon per series: far cheaper to draw than a bar per bin
                    ax.stairs(
                        counts, edges, fill=True, color=color, alpha=0.55, label=f"{label} ({data.size:,})"
                    )
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(numticks=5))
            ax.yaxis.set_minor_locator(NullLocator())
            ax.legend(fontsize=7, loc="upper right")
        else:  # nothing to histogram (e.g. biases initialised to zero): say so instead of empty axes
            ax.text(0.5, 0.5, "all weights are zero", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
        ax.set_title(_short(name), fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    fig.suptitle("Non-zero weights per layer (log count)", fontsize=11)
    return _png(fig)


def _bar_positions(n: int) -> list[float]:
    return [float(i) for i in range(n)]


def bits_per_layer(rows: Sequence[LayerRow]) -> bytes | None:
    """Bits stored per layer before and after, on a log axis (sizes span orders of magnitude)."""
    rows = [r for r in rows if r.bits_before or r.bits_after]
    if not rows:
        return None
    fig = _figure(max(6.0, 0.55 * len(rows) + 2), 3.8)
    ax = fig.subplots()
    x = _bar_positions(len(rows))
    ax.bar([i - 0.2 for i in x], [r.bits_before or 0 for r in rows], 0.4, label="before", color=BEFORE_COLOR)
    ax.bar([i + 0.2 for i in x], [r.bits_after or 0 for r in rows], 0.4, label="after", color=AFTER_COLOR)
    ax.set_yscale("log")
    ax.set_ylabel("bits")
    ax.set_xticks(x, [_short(r.name, 22) for r in rows], rotation=45, ha="right", fontsize=8)
    ax.set_title("Storage per layer", fontsize=11)
    ax.legend()
    return _png(fig)


def sparsity_per_layer(rows: Sequence[LayerRow]) -> bytes | None:
    """Fraction of zero weights per layer after compression."""
    rows = [r for r in rows if r.sparsity is not None]
    if not rows:
        return None
    fig = _figure(max(6.0, 0.55 * len(rows) + 2), 3.5)
    ax = fig.subplots()
    x = _bar_positions(len(rows))
    ax.bar(x, [100 * (r.sparsity or 0.0) for r in rows], 0.6, color=AFTER_COLOR)
    ax.set_ylim(0, 100)
    ax.set_ylabel("zeros (%)")
    ax.set_xticks(x, [_short(r.name, 22) for r in rows], rotation=45, ha="right", fontsize=8)
    ax.set_title("Sparsity per layer", fontsize=11)
    return _png(fig)


def history_series(history: Any) -> dict[str, list[float]]:
    """Named numeric series from a training history: a list of per-epoch dicts, {"epochs": [...]}, or
    a dict of name -> list of numbers."""
    if isinstance(history, Mapping):
        for key in ("epochs", "history"):
            if isinstance(history.get(key), list):
                return history_series(history[key])
        return {
            str(k): [float(x) for x in v]
            for k, v in history.items()
            if isinstance(v, list)
            and v
            and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)
        }
    if isinstance(history, list):
        series: dict[str, list[float]] = {}
        numeric = [e for e in history if isinstance(e, Mapping)]
        keys = {
            k for e in numeric for k, v in e.items() if isinstance(v, int | float) and not isinstance(v, bool)
        }
        counts = {k for k in keys if k == "samples" or k.endswith("_samples")}  # sample counts, not series
        for key in sorted(keys - {"epoch", "epochs"} - counts):
            values = [e.get(key) for e in numeric]
            if all(isinstance(v, int | float) for v in values):
                series[key] = [float(v) for v in values]  # type: ignore[arg-type]
        return series
    return {}


def history_stages(history: Any) -> list[tuple[int, str]]:
    """(1-based epoch index, stage name) where each training stage starts, for per-epoch dict lists."""
    if isinstance(history, Mapping):
        history = history.get("epochs") or history.get("history")
    if not isinstance(history, list):
        return []
    starts: list[tuple[int, str]] = []
    previous = None
    for i, entry in enumerate(history, start=1):
        stage = entry.get("stage") if isinstance(entry, Mapping) else None
        if stage and stage != previous:
            starts.append((i, str(stage)))
        previous = stage
    return starts


def history_curves(history: Any) -> bytes | None:
    """Loss curves on the left, accuracy/error curves on the right, one point per recorded epoch; dotted
    lines mark where a training stage (e.g. each prune-retrain iteration) begins."""
    series = history_series(history)
    stages = history_stages(history)
    losses = {k: v for k, v in series.items() if "loss" in k}
    quality = {k: v for k, v in series.items() if "acc" in k or "error" in k or "top" in k}
    if not losses and not quality:
        return None
    fig = _figure(10.0, 3.5)
    ax_loss, ax_quality = fig.subplots(1, 2)
    for ax, group, ylabel in ((ax_loss, losses, "loss"), (ax_quality, quality, "fraction")):
        for key, values in group.items():
            ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=key)
        for start, stage in stages if len(stages) > 1 else []:
            ax.axvline(start - 0.5, color="#999999", linestyle=":", linewidth=1)
            ax.text(
                start - 0.4,
                1.0,
                stage,
                transform=ax.get_xaxis_transform(),
                fontsize=7,
                va="top",
                color="#555",
            )
        ax.set_xlabel("epoch (all stages)" if len(stages) > 1 else "epoch")
        ax.set_ylabel(ylabel)
        if group:
            ax.legend(fontsize=8)
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_loss, ax_quality):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_loss.set_title("Loss", fontsize=11)
    ax_quality.set_title("Accuracy / error", fontsize=11)
    return _png(fig)
