"""Data-free compression one tensor at a time: `model.bin` (version 2), the dense outputs, `metrics.json`.

Memory follows the largest tensor times the pool's width, never the model: tensors are read from a
`source`, compressed, encoded, decoded back and written into their place by a pool of threads, and only
their (small) manifest entries and metrics stay. The bytes are the same whatever the pool size: each
tensor's work depends on that tensor alone, kernels run on one thread, and results are appended in the
input's order. Global pruning first splits κ over its tensors in two histogram passes
(`methods/prune/streaming.py`, through the registry's `shared_keeps_streaming`).

Outputs beside `model.bin`: a single-file input gets `model.pth` (as the in-memory path); a sharded input
gets its shards and index under their own names, in safetensors, with the input's headers. `outputs.dense`
false in the spec skips them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compression_core import __version__
from compression_core.errors import Cancelled, CompressionError, InputError
from compression_core.format.stream import EncodedEntry, StreamWriter, decode_entries, encode_entry
from compression_core.methods import registry
from compression_core.methods.apply import compress_tensor, dense_record
from compression_core.metrics import add_stream_stats, summarize, tensor_metrics, write_metrics
from compression_core.select import Selection, select_tensors
from compression_core.sources import DenseWriter, ModelSource, open_source
from compression_core.spec.base import DefaultDtype
from compression_core.spec.model import SpecBase as Spec
from compression_core.streaming.pool import (
    OrderedPool,
    default_workers,
    release_free_memory,
    single_threaded_kernels,
)
from compression_core.streaming.source import TensorInfo

log = logging.getLogger(__name__)

_KAPPA_END, _COMPRESS_END = 0.10, 0.97


@dataclass(frozen=True)
class StreamProgress:
    stage: str
    fraction: float
    message: str = ""


@dataclass
class _Done:
    """What a pool task hands back: all of it small except a dense record's bytes."""

    encoded: EncodedEntry
    metrics: dict[str, Any]


def _finite_or_fail(name: str, tensor: torch.Tensor) -> None:
    """A chunk at a time: a float32 copy (and a bool mask) of a whole bf16 tensor is 2.5x the tensor."""
    flat = tensor.reshape(-1)
    for lo in range(0, flat.numel(), _CHUNK):
        part = flat[lo : lo + _CHUNK]
        values = part.numpy() if part.dtype in (torch.float32, torch.float64) else part.float().numpy()
        if not np.isfinite(values).all():
            raise InputError(f"tensor {name!r} contains NaN or infinity; it cannot be compressed")


_CHUNK = 1 << 20


GROUP_ENTRIES = 1 << 22  # consecutive small tensors handled as one pool task, up to this many entries
# ... and up to this many tensors: a group reports progress and can be cancelled only once it is done, so a
# long run of small tensors under a slow step (k-means with many iterations) must not become one task
GROUP_TENSORS = 16


def tensor_groups(
    infos: list[TensorInfo], limit: int | None = None, max_tensors: int = GROUP_TENSORS
) -> list[list[TensorInfo]]:
    """Consecutive runs of at most `max_tensors` tensors of at most `limit` entries in all (a larger tensor
    alone), in order."""
    limit = limit or GROUP_ENTRIES
    groups: list[list[TensorInfo]] = []
    size = 0
    for info in infos:
        if not groups or size + info.numel > limit or len(groups[-1]) >= max_tensors:
            groups.append([])
            size = 0
        groups[-1].append(info)
        size += info.numel
    return groups


@dataclass
class _Compressed:
    """A tensor's encoded entry; its record's arrays are dropped once encoded (the decoded record, equal to
    it, serves the metrics), so a large tensor never has two records in memory."""

    name: str
    tensor: torch.Tensor
    stats: dict[str, Any]  # the record's, timings included
    label: str | None
    encoded: EncodedEntry


class _Job:
    """A group of tensors' whole path (read, compress, encode, decode, metrics, write), run by a pool
    thread. The group's entries are decoded together: the Huffman decoder costs per pass, so ResNet-50's
    320 mostly small tensors decoded one by one spent half the run there."""

    def __init__(
        self,
        source: ModelSource,
        selections: dict[str, Selection],
        keeps: dict[str, int],
        float16: bool,
        device: str,
        dense: DenseWriter | None,
    ) -> None:
        self.source, self.selections, self.keeps = source, selections, keeps
        self.float16, self.device, self.dense = float16, device, dense

    def _compress(self, name: str) -> _Compressed:
        tensor = self.source.load(name)
        sel = self.selections.get(name)
        if sel is None:
            record = dense_record(name, tensor, float16=self.float16)
        else:
            if name not in self.keeps:  # the global κ pass has checked the others
                _finite_or_fail(name, tensor)
            record = compress_tensor(
                name, tensor, sel.rule, label=sel.label, keep=self.keeps.get(name), device=self.device
            )
        release_free_memory()  # the step's temporaries, before encoding allocates its own
        # timings vary run to run: they go to metrics.json, never into model.bin
        encoded = encode_entry(
            replace(record, stats={k: v for k, v in record.stats.items() if k != "seconds"})
        )
        stats = record.stats
        del record
        release_free_memory()
        return _Compressed(name, tensor, stats, sel.label if sel else None, encoded)

    def __call__(self, group: list[TensorInfo]) -> list[_Done]:
        done = [self._compress(info.name) for info in group]
        decoded = decode_entries([item.encoded for item in done])
        results = []
        for item, record in zip(done, decoded, strict=True):
            record.stats = item.stats  # what the entry stored, plus the step timings
            # one dense copy, rebuilt from the entry's own bytes, serves the metrics and the dense output
            dense = record.reconstruct()
            metrics = tensor_metrics(item.name, item.tensor, record, item.label, reconstructed=dense)
            if self.dense is not None:
                self.dense.write(item.name, dense)
            results.append(_Done(item.encoded, metrics))
            del dense
        del done, decoded
        release_free_memory()
        return results


def streamable(spec: Spec) -> bool:
    """Data-free, and every step that decides over a whole rule is global pruning (whose κ split
    `methods/prune/streaming.py` computes without the weights in memory)."""
    if registry.needs_data(spec):
        return False
    methods = registry.step_methods()
    used = {step.type for rule in spec.rules for step in rule.steps}
    return all(
        methods[k].shared is None or methods[k].shared_streaming is not None for k in used if k in methods
    )


def compress_stream(
    model_path: Path | ModelSource,
    spec: Spec,
    out_dir: Path,
    *,
    progress: Callable[[StreamProgress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    device: str = "cpu",
    workers: int | None = None,
) -> dict[str, Any]:
    """Compress a data-free spec's model (a source, or a file, sharded index or folder) into `out_dir`;
    returns metrics. The source's `dense_writer` writes the dense outputs in its own layout."""
    if not streamable(spec):
        raise CompressionError(
            "streaming compression is data-free; data-aware specs (and steps that rank a whole rule other "
            "than global pruning) load the model"
        )
    started = time.perf_counter()
    workers = workers or default_workers()

    def report(stage: str, fraction: float, message: str = "") -> None:
        if progress is not None:
            progress(StreamProgress(stage, min(max(fraction, 0.0), 1.0), message))

    def check_cancel(where: str) -> None:
        if should_cancel is not None and should_cancel():
            raise Cancelled(f"cancelled {where}")

    source = model_path if isinstance(model_path, ModelSource) else open_source(model_path)
    report("load", 0.0, source.path.name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    timing: dict[str, float] = {}
    try:
        infos = source.infos
        if not infos:
            raise InputError(f"{source.path.name}: the state dict is empty")
        meta = {i.name: torch.empty(i.shape, dtype=i.dtype, device="meta") for i in infos}
        selections = select_tensors(meta, spec)
        del meta
        with single_threaded_kernels(), OrderedPool(workers) as pool:
            clock = time.perf_counter()
            report("global κ", 0.0, "magnitude histograms")
            keeps = registry.shared_keeps_streaming(
                {i.name: i.numel for i in infos},
                selections,
                source.load,
                pool.map,
            )
            timing["global_kappa"] = time.perf_counter() - clock
            check_cancel("after the global κ pass")
            metrics = _compress_all(
                source, spec, out_dir, selections, keeps, device, pool, report, check_cancel, timing
            )
    finally:
        source.close()
    metrics["streaming"] = {"workers": workers, "input_files": len(source.input_files())}
    metrics["timing"].update(timing, total=time.perf_counter() - started)
    write_metrics(out_dir / "metrics.json", metrics)
    report("done", 1.0, f"ratio {metrics['totals']['ratio']:.2f}x")
    return metrics


def _compress_all(
    source: ModelSource,
    spec: Spec,
    out_dir: Path,
    selections: dict[str, Selection],
    keeps: dict[str, int],
    device: str,
    pool: OrderedPool,
    report: Callable[..., None],
    check_cancel: Callable[[str], None],
    timing: dict[str, float],
) -> dict[str, Any]:
    clock = time.perf_counter()
    metadata = {
        "library": f"compression_core {__version__}",
        "source": source.label,
        "spec": spec.model_dump(mode="json"),
    }
    writer = StreamWriter(out_dir / "model.bin", metadata)
    dense = source.dense_writer(out_dir) if spec.outputs.dense else None
    job = _Job(source, selections, keeps, spec.default.dtype is DefaultDtype.float16, device, dense)
    total = sum(i.numel for i in source.infos) or 1
    done = 0
    entries: list[dict[str, Any]] = []
    streams: dict[str, list[Any]] = {}
    seconds: dict[str, float] = {}
    try:
        groups = tensor_groups(source.infos)
        finished = (r for results in pool.map(job, groups) for r in results)
        for info, result in zip(source.infos, finished, strict=True):
            writer.append(result.encoded)
            entries.append(result.metrics)
            streams[info.name] = result.encoded.streams
            for step, took in result.metrics["stats"].get("seconds", {}).items():
                seconds[step] = seconds.get(step, 0.0) + took
            done += info.numel
            sel = selections.get(info.name)
            stage = "+".join(step.type for step in sel.rule.steps) if sel else "keep"
            report(stage, _KAPPA_END + (_COMPRESS_END - _KAPPA_END) * done / total, info.name)
            check_cancel(f"after tensor {info.name!r}")
        report("write", _COMPRESS_END, "manifest, headers")
        bin_bytes, shares = writer.finish()
        dense_paths = dense.finish() if dense is not None else []
    except BaseException:
        writer.abort()
        if dense is not None:
            dense.abort()
        raise
    timing["compress"] = time.perf_counter() - clock
    for entry in entries:
        add_stream_stats(entry, [*streams[entry["name"]], shares[entry["name"]]])
    files: dict[str, Any] = {"input_bytes": source.input_bytes(), "model_bin_bytes": bin_bytes}
    if (out_dir / "model.pth") in dense_paths:
        files["model_pth_bytes"] = (out_dir / "model.pth").stat().st_size
    elif dense_paths:
        files["dense_files"] = [p.name for p in dense_paths]
        files["dense_bytes"] = sum(p.stat().st_size for p in dense_paths)
    return {
        "version": 1,
        "library": f"compression_core {__version__}",
        "device": device,
        "totals": summarize(entries, bin_bytes=bin_bytes),
        "timing": {"seconds": seconds},
        "tensors": entries,
        "files": files,
    }
