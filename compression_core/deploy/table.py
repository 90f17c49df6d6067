"""The seed-003 table: one row per (artifact, runtime) with parameters, file bytes, top-1/top-5 error,
latency percentiles at batch 1 and a throughput batch, and peak memory (see measure.py for the methods)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from compression_core.deploy.measure import latency, onnx_errors, peak_memory, torch_errors

__all__ = ["Candidate", "MeasureOptions", "deployment_table", "onnx_candidate", "torch_candidate"]

log = logging.getLogger(__name__)

Runner = Callable[[torch.Tensor], Any]


@dataclass(frozen=True)
class MeasureOptions:
    throughput_batch: int = 32
    runs_batch1: int = 20
    runs_throughput: int = 5
    warmup: int = 2
    device: str = "cpu"


@dataclass
class Candidate:
    """One deployable thing: its name, runtime, file, parameter count, and how to load it from the file."""

    name: str
    runtime: str  # "pytorch" or "onnxruntime"
    path: Path
    params: int
    load: Callable[[], Any]  # returns a torch module or an onnxruntime session, loaded from `path`


def torch_candidate(
    name: str, path: Path, params: int, load_module: Callable[[], torch.nn.Module]
) -> Candidate:
    return Candidate(name, "pytorch", Path(path), params, load_module)


def onnx_candidate(name: str, path: Path, params: int, threads: int) -> Candidate:
    from compression_core.deploy.onnx_export import ort_session

    return Candidate(name, "onnxruntime", Path(path), params, lambda: ort_session(path, threads))


def _runner(loaded: Any, runtime: str, device: str) -> Runner:
    if runtime == "pytorch":
        module = loaded.to(device).eval()

        def run_torch(x: torch.Tensor) -> Any:
            with torch.no_grad():
                return module(x.to(device))

        return run_torch
    name = loaded.get_inputs()[0].name
    return lambda x: loaded.run(None, {name: x.cpu().numpy().astype(np.float32)})


def _load_and_run(candidate: Candidate, device: str, batch: torch.Tensor, keep: list[Any]) -> None:
    """Load from the file and run one batch (what peak memory covers); the loaded object goes to `keep`."""
    loaded = candidate.load()
    _runner(loaded, candidate.runtime, device)(batch)
    keep.append(loaded)


def deployment_table(
    candidates: list[Candidate],
    inputs: torch.Tensor,
    dataset: TensorDataset | None,
    options: MeasureOptions,
) -> dict[str, Any]:
    """Measure each candidate on the first `throughput_batch` of `inputs` and, with data, its errors."""
    batch = min(options.throughput_batch, len(inputs))
    one, many = inputs[:1].contiguous(), inputs[:batch].contiguous()
    device = options.device
    sync = (lambda: torch.cuda.synchronize(device)) if device.startswith("cuda") else None
    rows = []
    memory_method = ""
    for candidate in candidates:
        cdev = device if candidate.runtime == "pytorch" else "cpu"
        kept: list[Any] = []
        memory, memory_method_row = peak_memory(partial(_load_and_run, candidate, cdev, many, kept), cdev)
        loaded = kept[0]  # latency and errors reuse what the memory measurement loaded
        run = _runner(loaded, candidate.runtime, cdev)
        row: dict[str, Any] = {
            "name": candidate.name,
            "runtime": candidate.runtime,
            "device": cdev,
            "params": int(candidate.params),
            "file_bytes": candidate.path.stat().st_size,
            "latency": {
                "batch1": latency(
                    partial(run, one), 1, runs=options.runs_batch1, warmup=options.warmup, sync=sync
                ),
                "throughput": latency(
                    partial(run, many), len(many), runs=options.runs_throughput, warmup=1, sync=sync
                ),
            },
            "peak_memory_bytes": memory,
            "memory_method": memory_method_row,
        }
        memory_method = memory_method_row
        if dataset is not None:
            if candidate.runtime == "pytorch":
                row["errors"] = torch_errors(loaded.to(cdev), dataset, cdev)
            else:
                row["errors"] = onnx_errors(loaded, dataset)
        rows.append(row)
        log.info("deployment: measured %s in %s", candidate.name, candidate.runtime)
    return {
        "device": device,
        "threads": {
            "pytorch_intra_op": torch.get_num_threads(),
            "onnxruntime_intra_op": torch.get_num_threads(),
            "inter_op": 1,
        },
        "throughput_batch": len(many),
        "memory_method": memory_method,
        "rows": rows,
    }
