"""From a spec and a model source to `model.bin`, `model.pth` and `metrics.json`: open the source -> plan
-> run the plan's stages (load -> methods -> encode -> write -> deploy).

`compress_state_dict` is the pure, data-free part (tensors in, records and metrics out); `compress_file`
opens the model source (`compression_core/sources/`), plans once (`job/plan.py`: outer, streamed or in
memory, and which stages), and runs the plan: the outer method, the streamed pipeline
(`streaming/pipeline.py`), or in memory the whole-model methods of a data-aware spec (`job/methods.py`),
encoding with the format, atomic writes and the deployment stage. The dense outputs are rebuilt from the
decoded `.bin` bytes, so decoding `model.bin` always gives exactly `model.pth`.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compression_core import __version__
from compression_core.errors import Cancelled, CompressionError, InputError
from compression_core.io import atomic_write_bytes
from compression_core.job.context import JobContext
from compression_core.job.methods import report_steps, run_methods
from compression_core.job.plan import Mode, Plan, plan_job
from compression_core.methods import registry
from compression_core.methods.apply import compress_tensor, dense_record
from compression_core.methods.base import CompressFn
from compression_core.methods.outer import OuterMethod
from compression_core.metrics import add_stream_stats, summarize, tensor_metrics, write_metrics
from compression_core.records import TensorRecord
from compression_core.select import select_tensors
from compression_core.sources import ModelSource, open_source
from compression_core.spec.base import DefaultDtype
from compression_core.spec.model import SpecBase as Spec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    stage: str
    fraction: float  # 0..1 over the whole job
    message: str = ""


ProgressCallback = Callable[[Progress], None]

# Share of the whole job given to each phase of compress_file, for the progress fraction.
_LOAD_END, _COMPRESS_END, _ENCODE_END = 0.05, 0.80, 0.90


def _report(progress: ProgressCallback | None, stage: str, fraction: float, message: str = "") -> None:
    if progress is not None:
        progress(Progress(stage, min(max(fraction, 0.0), 1.0), message))


def _check_cancel(should_cancel: Callable[[], bool] | None, where: str) -> None:
    if should_cancel is not None and should_cancel():
        raise Cancelled(f"cancelled {where}")


def _check_device(device: str) -> None:
    try:
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError) as error:
        raise CompressionError(f"device {device!r} is not usable here: {error}") from None


def _check_finite(state_dict: Mapping[str, torch.Tensor], names: list[str]) -> None:
    for name in names:
        tensor = state_dict[name].detach().cpu()
        values = tensor.numpy() if tensor.dtype in (torch.float32, torch.float64) else tensor.float().numpy()
        if not np.isfinite(values).all():
            raise InputError(f"tensor {name!r} contains NaN or infinity; it cannot be compressed")


def compress_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    spec: Spec,
    *,
    progress: ProgressCallback | None = None,
    should_cancel: Callable[[], bool] | None = None,
    device: str = "cpu",
    span: tuple[float, float] = (0.0, 1.0),
) -> tuple[list[TensorRecord], dict[str, Any]]:
    """Records for every tensor (in state-dict order) and the metrics that need no encoding.

    Progress fractions run over `span` of the caller's job, weighted by tensor size.
    """
    _check_device(device)
    selections = select_tensors(state_dict, spec)
    _check_finite(state_dict, list(selections))
    keeps = registry.shared_keeps(state_dict, selections, device)
    float16 = spec.default.dtype is DefaultDtype.float16
    total = sum(t.numel() for t in state_dict.values()) or 1
    done = 0
    records: list[TensorRecord] = []
    entries: list[dict[str, Any]] = []
    seconds: dict[str, float] = {}
    for name, tensor in state_dict.items():
        _check_cancel(should_cancel, f"before tensor {name!r}")
        sel = selections.get(name)
        stage = "+".join(step.type for step in sel.rule.steps) if sel else "keep"
        _report(progress, stage, span[0] + (span[1] - span[0]) * done / total, name)
        if sel is None:
            record = dense_record(name, tensor, float16=float16)
        else:
            record = compress_tensor(
                name, tensor, sel.rule, label=sel.label, keep=keeps.get(name), device=device
            )
        for step_name, took in record.stats.get("seconds", {}).items():
            seconds[step_name] = seconds.get(step_name, 0.0) + took
        records.append(record)
        entries.append(tensor_metrics(name, tensor, record, sel.label if sel else None))
        done += tensor.numel()
        log.debug("compressed %s with %s", name, record.method)
    _report(progress, "compressed", span[1], f"{len(records)} tensors")
    metrics: dict[str, Any] = {
        "version": 1,
        "library": f"compression_core {__version__}",
        "device": device,
        "totals": summarize(entries),
        "timing": {"seconds": seconds},
        "tensors": entries,
    }
    return records, metrics


def compress_file(
    model_path: Path,
    spec: Spec,
    out_dir: Path,
    *,
    progress: ProgressCallback | None = None,
    should_cancel: Callable[[], bool] | None = None,
    device: str = "cpu",
    data_path: Path | None = None,
    teacher_path: Path | None = None,
    inputs: Mapping[str, Path] | None = None,
    checkpoint_dir: Path | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Compress a model into out_dir/{model.bin, the dense outputs, metrics.json}; returns the metrics.

    Open the model source (`compression_core/sources/`), plan once (`job/plan.py`), run the plan's stages.
    `inputs` are the extra files the spec's methods take, by upload role (`teacher_path` is `teacher`).
    `checkpoint_dir` (the job's folder, which outlives one worker's attempt): long runs (LC, SWS) save their
    state there after every finished step and resume from it.

    Data-free specs stream, one tensor at a time on `workers` threads (`compression_core/streaming/`,
    docs/streaming.md); the model path may then also be a sharded checkpoint's index or folder."""
    from compression_core.streaming.pipeline import compress_stream

    run = _Run(
        spec,
        open_source(model_path, spec.model),
        Path(out_dir),
        progress,
        should_cancel,
        device,
        data_path,
        {**({"teacher": Path(teacher_path)} if teacher_path is not None else {}), **(inputs or {})},
        checkpoint_dir,
    )
    plan = plan_job(spec, run.source, device=device, workers=workers)
    log.info("plan: %s", "\n".join(plan.lines()))
    try:
        if plan.mode is Mode.outer:
            return run.outer(plan)
        if data_path is not None and spec.data is None:
            log.info("data-free compression ignores the data set %s", data_path)
        if plan.mode is Mode.streamed:  # stream (issue 14): memory follows the largest tensor, not the model
            relay = None if progress is None else lambda p: progress(Progress(p.stage, p.fraction, p.message))
            return compress_stream(
                run.source,
                spec,
                run.out_dir,
                progress=relay,
                should_cancel=should_cancel,
                device=device,
                workers=plan.workers,
            )
        return run.in_memory(plan)
    finally:
        run.source.close()


@dataclass
class _Run:
    """One job's inputs and callbacks, shared by the stages of its plan."""

    spec: Spec
    source: ModelSource
    out_dir: Path
    progress: ProgressCallback | None
    should_cancel: Callable[[], bool] | None
    device: str
    data_path: Path | None
    inputs: dict[str, Path]
    checkpoint_dir: Path | None

    def outer(self, plan: Plan) -> dict[str, Any]:
        """An outer method (a search) runs the rest of the spec itself: here its children run one by one."""
        from compression_core.job.outer import run_outer

        (name,) = plan.names("outer")
        method = registry.model_method(name)
        assert isinstance(method, OuterMethod)
        return run_outer(
            method,
            self.spec,
            self.source.path,
            self.out_dir,
            report=lambda stage, fraction, message: _report(self.progress, stage, fraction, message),
            should_cancel=self.should_cancel,
            device=self.device,
            data_path=self.data_path,
            inputs=self.inputs,
        )

    def in_memory(self, plan: Plan) -> dict[str, Any]:
        """Load -> (prepare, structured, retrain) -> compress -> encode -> write -> deploy."""
        from compression_core.format import decode_state_dict, encode_records

        spec, source, out_dir, progress = self.spec, self.source, self.out_dir, self.progress
        timing: dict[str, float] = {}
        clock = time.perf_counter()
        _report(progress, "load", 0.0, source.path.name)
        state_dict = source.state_dict()
        timing["load"] = time.perf_counter() - clock
        _check_cancel(self.should_cancel, "after loading")

        clock = time.perf_counter()
        data_job, deploy = None, None
        if plan.runs("retrain"):  # model / data / a method that trains: evaluation and training around steps
            data_job = JobContext(
                spec,
                state_dict,
                source=source,
                data_path=self.data_path,
                device=self.device,
                inputs=self.inputs,
                progress=lambda stage, fraction, message: _report(progress, stage, fraction, message),
                should_cancel=self.should_cancel,
                span=(_LOAD_END, _COMPRESS_END),
            )
            data_job.checkpoint_dir = self.checkpoint_dir  # seeds: resumable LC and SWS
            compress: CompressFn = functools.partial(compress_state_dict, device=self.device)
            # --- deploy (issue 12), 1 of 2: physical structured pruning before the methods train --------
            if plan.runs("deploy"):
                from compression_core.deploy.stage import DeployStage

                deploy = DeployStage.start(data_job, data_job.progress)
                compress = deploy.wrap(compress)
            (main,) = plan.names("retrain")
            records, metrics = run_methods(data_job, compress, plan.names("prepare"), main)
        else:
            records, metrics = compress_state_dict(
                state_dict,
                spec,
                progress=progress,
                should_cancel=self.should_cancel,
                device=self.device,
                span=(_LOAD_END, _COMPRESS_END),
            )
        timing["compress"] = time.perf_counter() - clock
        _check_cancel(self.should_cancel, "before encoding")

        _report(progress, "encode", _COMPRESS_END, "Huffman coding and container")
        clock = time.perf_counter()
        metadata = {
            "library": f"compression_core {__version__}",
            "source": source.label,
            "spec": spec.model_dump(mode="json"),
        }
        # timings vary run to run: they belong in metrics.json, never in model.bin (it must be reproducible)
        timeless = [replace(r, stats={k: v for k, v in r.stats.items() if k != "seconds"}) for r in records]
        encoded = encode_records(timeless, metadata=metadata)
        timing["encode"] = time.perf_counter() - clock
        _check_cancel(self.should_cancel, "before writing")

        _report(progress, "write", _ENCODE_END, "model.bin, model.pth, metrics.json")
        clock = time.perf_counter()
        decoded = decode_state_dict(encoded.data)
        timing["decode"] = time.perf_counter() - clock
        clock = time.perf_counter()
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out_dir / "model.bin", encoded.data)
        dense = source.write(out_dir, decoded) if spec.outputs.dense else []  # stream (issue 14): optional
        extra = [path for writer in (data_job.writers if data_job else []) for path in writer(out_dir)]
        timing["write"] = time.perf_counter() - clock
        # --- deploy (issue 12), 2 of 2: architecture.json, evaluation.after of load_model(out_dir), -------
        # model.onnx checked in onnxruntime, the "deploy" methods (int8), metrics["deployment"]
        if deploy is not None and data_job is not None:
            clock = time.perf_counter()
            deploy.finish(out_dir, metrics, progress=data_job.progress)
            if not deploy.history:  # the steps' reports, on the deployed model
                report_steps(data_job, deploy.deployed, metrics)
            timing["deploy"] = time.perf_counter() - clock

        for entry in metrics["tensors"]:
            add_stream_stats(entry, encoded.streams.get(entry["name"], []))
        upload = deploy.upload if deploy is not None else None  # structured pruning: ratio against the upload
        metrics["totals"] = summarize(metrics["tensors"], bin_bytes=len(encoded.data), upload=upload)
        metrics["files"] = {"input_bytes": source.input_bytes(), "model_bin_bytes": len(encoded.data)}
        notes = source.notes()
        if notes:
            metrics["source"] = {"kind": source.kind, **notes}
        if out_dir / "model.pth" in dense:
            metrics["files"]["model_pth_bytes"] = (out_dir / "model.pth").stat().st_size
        elif dense:
            metrics["files"]["dense_files"] = [p.name for p in dense]
            metrics["files"]["dense_bytes"] = sum(p.stat().st_size for p in dense)
        if extra:  # files the methods added (weight quantization's checkpoint)
            metrics["files"]["extra"] = {p.name: p.stat().st_size for p in extra}
        metrics["timing"].update(timing)
        write_metrics(out_dir / "metrics.json", metrics)
        _report(progress, "done", 1.0, f"ratio {metrics['totals']['ratio']:.2f}x")
        return metrics
