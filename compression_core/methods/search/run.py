"""A search's outcome from its trials, wherever they ran (in this process, `job/outer.py`, or as child jobs
over the workers, worker/search.py): the chosen trial's files, the `search` section, search.csv, plots."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from compression_core.errors import CompressionError
from compression_core.io import atomic_write_bytes
from compression_core.methods.search.results import search_section, write_search_files
from compression_core.methods.search.spec import SearchSpec
from compression_core.methods.search.trials import TrialResult

__all__ = ["finalize"]

log = logging.getLogger(__name__)

BEST_FILES = ("model.bin", "model.pth")
# what a trial on a Hugging Face model ships instead of model.pth (the dense and the quantized checkpoint)
OPTIONAL_FILES = ("model.pth", "model.hf.tar", "model.quantized.tar")


def finalize(
    search: SearchSpec,
    trials: Sequence[TrialResult],
    best_dir: Callable[[int], Path],
    out_dir: Path,
    *,
    trace: Sequence[dict[str, Any]] = (),
    note: str = "",
    base: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """out_dir gets the chosen trial's model.bin and model.pth (or its checkpoint tars), its metrics.json
    with the `search` section, search.csv and the plots. `best_dir(index)` is where that trial's files are.
    `base`: the search's whole spec."""
    section = search_section(search, trials, trace=trace, note=note, base=base)
    best = section["best"]
    if best is None:
        reasons = "; ".join(f"#{t.index}: {t.reason or t.state}" for t in trials[:5])
        raise CompressionError(f"search: no trial succeeded ({len(trials)} run): {reasons}")
    source = best_dir(best)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in BEST_FILES:
        if name in OPTIONAL_FILES and not (source / name).is_file():
            continue
        shutil.copyfile(source / name, out_dir / name)
    for name in OPTIONAL_FILES:
        if name not in BEST_FILES and (source / name).is_file():
            shutil.copyfile(source / name, out_dir / name)
    metrics = json.loads((source / "metrics.json").read_text())
    metrics["search"] = section
    atomic_write_bytes(out_dir / "metrics.json", json.dumps(metrics, indent=1).encode())
    write_search_files(out_dir, trials, section)
    return metrics
