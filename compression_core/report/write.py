"""`write_report`: report.html and plots/*.png into a job's output folder, each file replaced atomically."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compression_core.report.render import render_report

if TYPE_CHECKING:
    import torch


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(
    out_dir: str | Path,
    metrics: Mapping[str, Any] | None,
    before: Mapping[str, torch.Tensor] | None = None,
    after: Mapping[str, torch.Tensor] | None = None,
    history: Any = None,
) -> list[Path]:
    """Render and write `out_dir/report.html` and `out_dir/plots/*.png`; returns the written paths.

    The PNGs go first, the HTML last, so a present report.html means the whole report is there.
    """
    out = Path(out_dir)
    page, pngs = render_report(metrics, before, after, history)
    written = []
    for name, data in pngs.items():
        path = out / "plots" / name
        _atomic_write(path, data)
        written.append(path)
    report = out / "report.html"
    _atomic_write(report, page.encode("utf-8"))
    written.append(report)
    return written


def write_job_report(out_dir: str | Path, model_path: str | Path, history: Any = None) -> list[Path]:
    """The report of a finished `compress_file` run: reads out_dir/metrics.json, the input state dict and
    out_dir/model.pth, then `write_report`s into out_dir. The worker calls this after `compress_file`."""
    import json

    from compression_core.io import load_state_dict
    from compression_core.sources import open_source

    out = Path(out_dir)
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    with open_source(model_path) as source:  # the upload as its kind reads it (a state dict, an ONNX graph)
        before = source.state_dict()
    after = load_state_dict(out / "model.pth")
    return write_report(
        out, metrics, before, after, history if history is not None else metrics.get("history")
    )
