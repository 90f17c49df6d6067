"""Same input and spec, same artifact bytes (issue 20): model.pth and every other weights file, streamed or
built in memory, and `mcs decode` gives model.pth bit for bit at the file level. metrics.json and report.html
differ only in what is measured on the clock or in memory (timings, latencies, peak memory)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from compression_core.job.pipeline import compress_file
from compression_core.models import build_model
from compression_core.report import write_job_report
from compression_core.spec import parse_spec
from mcs.app import app
from mcs_common.storage import sha256_file

MEASURED = {
    "timing",
    "seconds",
    "latency",
    "latency_ms_per_batch",
    "latency_ms_per_sample",
    "peak_memory_bytes",
}


def _files(folder: Path) -> dict[str, Path]:
    return {str(p.relative_to(folder)): p for p in sorted(folder.rglob("*")) if p.is_file()}


def _unmeasured(doc: Any) -> Any:
    """The document without the values a clock or a memory probe gives (they differ run to run)."""
    if isinstance(doc, dict):
        return {k: _unmeasured(v) for k, v in doc.items() if k not in MEASURED}
    if isinstance(doc, list):
        return [_unmeasured(v) for v in doc]
    return doc


def _decode_cli(model_bin: Path, out: Path) -> bytes:
    result = CliRunner().invoke(app, ["decode", str(model_bin), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out.read_bytes()


def test_a_streamed_job_twice_gives_the_same_files_and_decode_gives_model_pth(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(3)
    state = {name: torch.randn(24, 40, generator=generator) for name in ("a.weight", "b.weight")}
    state["a.bias"] = torch.randn(24, generator=generator)
    save_file(state, str(tmp_path / "m.safetensors"))
    spec = {"rules": [{"select": {"name": "a.weight"}, "steps": [{"type": "prune", "sparsity": 0.7}]}]}
    for run in ("one", "two"):
        compress_file(tmp_path / "m.safetensors", parse_spec(json.dumps(spec)), tmp_path / run)
    one, two = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert one.keys() == two.keys() >= {"model.pth", "model.bin", "metrics.json"}
    for name in ("model.pth", "model.bin"):
        assert one[name].read_bytes() == two[name].read_bytes(), name
        assert sha256_file(one[name]) == sha256_file(two[name])  # the service's ETag
    # the streaming writer lays model.pth out itself; mcs decode writes it with torch.save: same bytes
    assert _decode_cli(one["model.bin"], tmp_path / "decoded.pth") == one["model.pth"].read_bytes()


def test_a_trained_and_deployed_job_twice_gives_the_same_artifacts(tmp_path: Path, one_thread: None) -> None:
    torch.manual_seed(0)
    model = build_model({"arch": "lenet5"})
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "in.safetensors"))
    spec = {
        "model": {"arch": "lenet5"},
        "data": {"builtin": "mnist-5k"},
        "rules": [
            {"select": {"name": "conv*.weight"}, "steps": [{"type": "structured", "sparsity": 0.5}]},
            {
                "select": {"name": "fc1.weight"},
                "steps": [{"type": "prune", "sparsity": 0.5}, {"type": "quantize", "k": 4}],
            },
        ],
        "retrain": {"prune_schedule": [1.0], "prune": {"epochs": 1}, "finetune": {"epochs": 1, "lr": 0.001}},
    }
    for run in ("one", "two"):
        compress_file(tmp_path / "in.safetensors", parse_spec(json.dumps(spec)), tmp_path / run)
        write_job_report(tmp_path / run, tmp_path / "in.safetensors")
    one, two = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert one.keys() == two.keys()
    weights = {"model.pth", "model.bin", "architecture.json", "model.onnx"}
    assert weights <= one.keys()
    measured = {"metrics.json", "report.html", "plots/latency.png"}  # hold latencies and peak memory
    for name in one.keys() - measured:
        assert one[name].read_bytes() == two[name].read_bytes(), name
    first, second = (json.loads(f["metrics.json"].read_text()) for f in (one, two))
    assert first["evaluation"]["after"]["error"] is not None
    assert _unmeasured(first) == _unmeasured(second)
    assert _decode_cli(one["model.bin"], tmp_path / "decoded.pth") == one["model.pth"].read_bytes()
