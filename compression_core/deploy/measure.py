"""Deployment measurements: top-1/top-5 error, latency percentiles and peak memory, per runtime.

Latency: after `warmup` passes, `runs` timed passes of one batch; p50/p90 of those times, per batch and per
sample, at batch 1 and at a throughput batch. PyTorch eager and onnxruntime run with the same number of
intra-op threads (stated in metrics.json). On CUDA, PyTorch passes are synchronised.

Peak memory: on CUDA `torch.cuda.max_memory_allocated` over loading the weights and one throughput pass.
On the CPU the resident set's high-water mark: we return freed heap to the system (glibc `malloc_trim`),
reset VmHWM (Linux: write "5" to /proc/self/clear_refs), load the artifact from its file, run one throughput
batch and report how far VmHWM rose above the resident set before loading ("rss_peak_delta"). It counts
weights, runtime buffers and activations; memory an allocator still holds from earlier work is reused
unseen, so it is a lower bound. Without /proc it is not measured (null).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

__all__ = ["MEMORY_METHOD_CPU", "latency", "onnx_errors", "peak_memory", "percentile", "torch_errors"]

log = logging.getLogger(__name__)

MEMORY_METHOD_CPU = "rss_peak_delta: VmHWM rise over loading the file + one throughput pass (Linux /proc)"
MEMORY_METHOD_CUDA = "cuda.max_memory_allocated over loading the weights + one throughput pass"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return float(statistics.quantiles(ordered, n=100, method="inclusive")[round(q) - 1])


def latency(
    run: Callable[[], Any], batch: int, *, runs: int, warmup: int, sync: Callable[[], None] | None = None
) -> dict[str, float]:
    """p50/p90 milliseconds of `run()` per batch and per sample."""
    for _ in range(warmup):
        run()
    if sync:
        sync()
    times = []
    for _ in range(max(1, runs)):
        start = time.perf_counter()
        run()
        if sync:
            sync()
        times.append((time.perf_counter() - start) * 1000.0)
    p50, p90 = percentile(times, 50), percentile(times, 90)
    return {
        "batch": batch,
        "runs": len(times),
        "p50_ms": p50,
        "p90_ms": p90,
        "p50_ms_per_sample": p50 / batch,
        "p90_ms_per_sample": p90 / batch,
    }


def _status_kib(name: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise OSError(f"{name} not in /proc/self/status")


def _trim() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def peak_memory(load_and_run: Callable[[], Any], device: str = "cpu") -> tuple[int | None, str]:
    """(peak bytes of `load_and_run()`, how it was measured); see the module docstring."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        load_and_run()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - before), MEMORY_METHOD_CUDA
    _trim()
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        before = _status_kib("VmRSS")
        load_and_run()
        return max(0, _status_kib("VmHWM") - before) * 1024, MEMORY_METHOD_CPU
    except OSError:
        return None, "not measured (no Linux /proc)"


def _topk_counts(logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
    top = logits.topk(min(5, logits.shape[1]), dim=1).indices
    return int((top[:, 0] == labels).sum()), int((top == labels[:, None]).any(dim=1).sum())


def _errors(correct1: int, correct5: int, n: int) -> dict[str, Any]:
    return {
        "samples": n,
        "top1_error": 1.0 - correct1 / n,
        "top5_error": 1.0 - correct5 / n,
        "top1_wrong": n - correct1,
    }


@torch.no_grad()
def torch_errors(
    model: nn.Module, dataset: TensorDataset, device: str = "cpu", batch_size: int = 500
) -> dict[str, Any]:
    model.eval()
    c1 = c5 = n = 0
    for x, y in DataLoader(dataset, batch_size=batch_size):
        a, b = _topk_counts(model(x.to(device)).cpu(), y)
        c1, c5, n = c1 + a, c5 + b, n + len(y)
    return _errors(c1, c5, n)


def onnx_errors(session: Any, dataset: TensorDataset, batch_size: int = 500) -> dict[str, Any]:
    name = session.get_inputs()[0].name
    c1 = c5 = n = 0
    for x, y in DataLoader(dataset, batch_size=batch_size):
        logits = torch.from_numpy(session.run(None, {name: x.numpy().astype(np.float32)})[0])
        a, b = _topk_counts(logits, y)
        c1, c5, n = c1 + a, c5 + b, n + len(y)
    return _errors(c1, c5, n)
