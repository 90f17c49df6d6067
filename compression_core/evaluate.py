"""Measure a model on a data set: error, top-1/top-5, loss, confusion matrix, latency and peak memory.

The same function runs before and after compression, so metrics.json can put the two side by side.
Latency is the median of a few timed passes over one batch after warm-up passes (medians resist the
scheduler noise of a shared machine). Peak memory is `torch.cuda.max_memory_allocated` on CUDA. On the CPU,
torch's tensors bypass Python's allocator (so `tracemalloc` would see almost nothing); we reset the
process's resident-set high-water mark (Linux: write "5" to /proc/self/clear_refs) and report how far
VmHWM rose above the resident set before one pass ("rss_peak_delta"). Memory the allocator reuses from
earlier passes does not show, so it is a lower bound; where /proc is unavailable we fall back to
`tracemalloc`. `memory_source` says which was used.
"""

from __future__ import annotations

import statistics
import time
import tracemalloc
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

__all__ = ["Evaluation", "evaluate", "measure_latency"]


@dataclass
class Evaluation:
    samples: int
    error: float  # 1 - top1, a fraction
    top1: float
    top5: float
    loss: float  # mean cross-entropy
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    latency_ms_per_batch: float | None = None
    latency_ms_per_sample: float | None = None
    latency_batch_size: int | None = None
    peak_memory_bytes: int | None = None
    memory_source: str | None = None  # "cuda.max_memory_allocated" or "tracemalloc"
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: TensorDataset,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 1000,
    num_classes: int | None = None,
    timing: bool = True,
    timing_batch_size: int = 64,
    timing_runs: int = 5,
    warmup_runs: int = 2,
) -> Evaluation:
    """Accuracy numbers over the whole set, plus latency and peak memory on `device` when `timing`."""
    device = torch.device(device)
    model = model.to(device)
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    n = correct1 = correct5 = 0
    loss_sum = 0.0
    preds, targets = [], []
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        out = model(x)
        loss_sum += float(nn.functional.cross_entropy(out, y, reduction="sum"))
        top = out.topk(min(5, out.shape[1]), dim=1).indices
        correct1 += int((top[:, 0] == y).sum())
        correct5 += int((top == y[:, None]).any(dim=1).sum())
        preds.append(top[:, 0].cpu())
        targets.append(y.cpu())
        n += len(y)
    if n == 0:
        raise ValueError("cannot evaluate on an empty data set")
    pred, target = torch.cat(preds), torch.cat(targets)
    k = num_classes or int(max(int(pred.max()), int(target.max()))) + 1
    confusion = torch.bincount(target * k + pred, minlength=k * k).reshape(k, k)
    top1 = correct1 / n
    result = Evaluation(
        samples=n,
        error=1.0 - top1,
        top1=top1,
        top5=correct5 / n,
        loss=loss_sum / n,
        confusion=confusion.tolist(),
        device=str(device),
    )
    if timing:
        batch = dataset.tensors[0][:timing_batch_size].to(device)
        per_batch, peak, source = measure_latency(model, batch, runs=timing_runs, warmup=warmup_runs)
        result.latency_ms_per_batch = per_batch
        result.latency_ms_per_sample = per_batch / len(batch)
        result.latency_batch_size = len(batch)
        result.peak_memory_bytes = peak
        result.memory_source = source
    model.train(was_training)
    return result


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def measure_latency(
    model: nn.Module, batch: torch.Tensor, *, runs: int = 5, warmup: int = 2
) -> tuple[float, int, str]:
    """(median ms per forward pass of `batch`, peak bytes during one pass, how the peak was measured)."""
    device = batch.device
    for _ in range(warmup):
        model(batch)
    _sync(device)
    times = []
    for _ in range(max(1, runs)):
        start = time.perf_counter()
        model(batch)
        _sync(device)
        times.append((time.perf_counter() - start) * 1000.0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        model(batch)
        _sync(device)
        return (
            statistics.median(times),
            int(torch.cuda.max_memory_allocated(device)),
            "cuda.max_memory_allocated",
        )
    rss_peak = _rss_peak_delta(model, batch)
    if rss_peak is not None:
        return statistics.median(times), rss_peak, "rss_peak_delta"
    tracemalloc.start()
    try:
        model(batch)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return statistics.median(times), int(peak), "tracemalloc"


def _status_kib(field_name: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise OSError(f"{field_name} not in /proc/self/status")


def _rss_peak_delta(model: nn.Module, batch: torch.Tensor) -> int | None:
    """Bytes the resident set peaked above its level before one forward pass; None without Linux /proc."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # resets VmHWM to the current RSS
        before = _status_kib("VmRSS")
        model(batch)
        return max(0, _status_kib("VmHWM") - before) * 1024
    except OSError:
        return None
