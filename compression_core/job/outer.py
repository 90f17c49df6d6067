"""An outer method (a search) run in this process: its driver's rounds, each child one after another, then
its outcome. The service runs the same driver with each child a job over the workers (worker/search.py)."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from compression_core.errors import Cancelled, CompressionError
from compression_core.methods.outer import Child, OuterMethod

__all__ = ["run_outer"]

log = logging.getLogger(__name__)

ReportFn = Callable[[str, float, str], None]  # stage, fraction, message


def run_outer(
    method: OuterMethod,
    spec: Any,
    model_path: Path,
    out_dir: Path,
    *,
    report: ReportFn,
    should_cancel: Callable[[], bool] | None = None,
    device: str = "cpu",
    data_path: Path | None = None,
    inputs: Mapping[str, Path] | None = None,
) -> dict[str, Any]:
    """Every child here, one at a time (one slot per round); the same files as the service's outer job."""
    from compression_core.spec import Spec

    driver = method.make_driver(spec.method(method.name), spec.model_dump(mode="json"))
    out_dir = Path(out_dir)
    child_root = out_dir / "trials"
    children: list[Child] = []
    trace: list[dict[str, Any]] = []
    while True:
        planned = driver.plan(children, 1, model_path)
        if planned.finished:
            break
        trace.append({"round": len(trace) + 1, "trials": [], "note": planned.note})
        for plan in planned.children:
            if should_cancel is not None and should_cancel():
                raise Cancelled(f"{method.name} cancelled between trials")
            index = len(children)
            report(method.name, index / max(1, planned.total), f"trial {index + 1}")
            clock = time.perf_counter()
            child = Child(index, plan.record, "succeeded")
            try:
                child.metrics = driver.run_child(
                    model_path,
                    Spec.model_validate(plan.spec),
                    child_root / str(index),
                    record=plan.record,
                    should_cancel=should_cancel,
                    device=device,
                    data_path=data_path,
                    inputs=inputs,
                )
            except Cancelled:
                raise
            except CompressionError as error:
                child.state, child.reason = "failed", str(error)
            child.seconds = time.perf_counter() - clock
            children.append(child)
            trace[-1]["trials"].append(index)
    metrics = driver.finish(children, lambda i: child_root / str(i), out_dir, trace=trace, note=planned.note)
    shutil.rmtree(child_root, ignore_errors=True)
    log.info("%s: %s", method.name, driver.summary(metrics, children))
    return metrics
