"""A search in one process: plan, run each trial (trial.py), repeat, then assemble the outcome. The
service runs the same steps with the trials as child jobs; `finalize` is shared by both."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from compression_core.errors import Cancelled, CompressionError
from compression_core.io import atomic_write_bytes
from compression_core.methods.search import sensitivity
from compression_core.methods.search.planner import plan_next
from compression_core.methods.search.results import search_section, write_search_files
from compression_core.methods.search.spec import SearchMode, SearchSpec
from compression_core.methods.search.trials import TrialResult

__all__ = ["finalize", "run_search"]

log = logging.getLogger(__name__)

BEST_FILES = ("model.bin", "model.pth")


def finalize(
    search: SearchSpec,
    trials: Sequence[TrialResult],
    best_dir: Callable[[int], Path],
    out_dir: Path,
    *,
    trace: Sequence[dict[str, Any]] = (),
    note: str = "",
) -> dict[str, Any]:
    """out_dir gets the chosen trial's model.bin and model.pth, its metrics.json with the `search` section,
    search.csv and the plots. `best_dir(index)` is where that trial's files are."""
    section = search_section(search, trials, trace=trace, note=note)
    best = section["best"]
    if best is None:
        reasons = "; ".join(f"#{t.index}: {t.reason or t.state}" for t in trials[:5])
        raise CompressionError(f"search: no trial succeeded ({len(trials)} run): {reasons}")
    source = best_dir(best)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in BEST_FILES:
        shutil.copyfile(source / name, out_dir / name)
    metrics = json.loads((source / "metrics.json").read_text())
    metrics["search"] = section
    atomic_write_bytes(out_dir / "metrics.json", json.dumps(metrics, indent=1).encode())
    write_search_files(out_dir, trials, section)
    return metrics


def run_search(
    search: SearchSpec,
    spec: Any,
    model_path: Path,
    out_dir: Path,
    *,
    progress: Callable[..., None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    device: str = "cpu",
    data_path: Path | None = None,
    inputs: Mapping[str, Path] | None = None,
) -> dict[str, Any]:
    """Run every trial here, one after another; the same files as a search job in the service (the
    registry's "outer" method run: `compress_file` calls it for a spec with a `search` field)."""
    from compression_core.io import load_state_dict
    from compression_core.job.pipeline import Progress
    from compression_core.methods.search.trial import run_trial
    from compression_core.spec import Spec

    base = spec.model_dump(mode="json")
    layers = None
    if search.mode is SearchMode.sensitivity:
        layers = sensitivity.select_layers(load_state_dict(model_path), base, search)
    out_dir = Path(out_dir)
    trial_root = out_dir / "trials"
    trials: list[TrialResult] = []
    trace: list[dict[str, Any]] = []
    while True:
        plan = plan_next(search, base, trials, slots=1, layers=layers)
        if plan.finished:
            note = plan.note
            break
        trace.append({"round": len(trace) + 1, "trials": [], "note": plan.note})
        for planned in plan.trials:
            if should_cancel is not None and should_cancel():
                raise Cancelled("search cancelled between trials")
            index = len(trials)
            if progress is not None:
                progress(Progress("search", index / max(1, search.max_trials), f"trial {index + 1}"))
            clock = time.perf_counter()
            folder = trial_root / str(index)
            try:
                metrics = run_trial(
                    model_path,
                    Spec.model_validate(planned.spec),
                    folder,
                    search.validation,
                    should_cancel=should_cancel,
                    device=device,
                    data_path=data_path,
                    inputs=inputs,
                )
                row = TrialResult.from_metrics(
                    index, planned.parameters, "succeeded", metrics, label=planned.label
                )
            except Cancelled:
                raise
            except CompressionError as error:
                row = TrialResult(index, planned.parameters, "failed", label=planned.label, reason=str(error))
            row.seconds = time.perf_counter() - clock
            trials.append(row)
            trace[-1]["trials"].append(index)
    metrics = finalize(search, trials, lambda i: trial_root / str(i), out_dir, trace=trace, note=note)
    shutil.rmtree(trial_root, ignore_errors=True)
    return metrics
