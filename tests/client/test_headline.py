"""The client's headline reader (client/headline.py, standard library only) reads what the library writes:
on a real job's metrics.json and on older or partial layouts it gives the numbers the library's own reader
(compression_core.report.headline) gives."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from client import headline as client_headline
from compression_core.job.pipeline import compress_file
from compression_core.report.headline import headline as core_reader
from compression_core.report.headline import human_bytes as core_human_bytes
from compression_core.spec import Spec
from tests.service.svc_helpers import SPEC, write_model

FIELDS = [f.name for f in dataclasses.fields(client_headline.Headline)]


def _same(metrics: dict[str, Any] | None) -> client_headline.Headline:
    ours, theirs = client_headline.headline(metrics), core_reader(metrics)
    assert {f: getattr(ours, f) for f in FIELDS} == {f: getattr(theirs, f) for f in FIELDS}
    assert ours.error_increase == theirs.error_increase
    return ours


def test_a_real_jobs_metrics_read_as_the_library_reads_them(tmp_path: Path) -> None:
    model = write_model(tmp_path)  # fc1 32x48, fc2 10x32, biases; pruned and quantized
    compress_file(model, Spec.model_validate(SPEC), tmp_path / "out")
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    h = _same(metrics)
    assert h.ratio is not None and h.ratio > 1
    assert h.size_after_bytes == (tmp_path / "out" / "model.bin").stat().st_size
    assert h.params_total == 32 * 48 + 32 + 10 * 32 + 10
    assert h.params_nonzero is not None and h.params_nonzero < h.params_total


@pytest.mark.parametrize(
    "metrics",
    [
        None,
        {},
        {"evaluation": {"before": {"error": 0.04, "samples": 1000}, "after": {"error": 0.047}}},
        {"evaluation": {"samples": 500, "before": {"accuracy": 0.9}, "after": {"accuracy": 0.85}}},
        {"eval": {"before": {"error": 0.1}, "after": {"error": 0.12}}},
        {"error_before": "0.2", "accuracy_after": 0.75},
        {"ratio": True, "size_before_bytes": 4096, "size_after_bytes": 1024},
        {"totals": {"original_bits": 8000, "bin_bits": 800, "params": 250, "nonzeros": None}},
        {"files": {"input_bytes": 3000, "model_bin_bytes": 300}, "totals": {"ratio": "n/a"}},
        {"totals": "not a mapping", "evaluation": {"after": {"samples": 10, "error": 0.5}}},
    ],
)
def test_partial_and_older_layouts_read_the_same(metrics: dict[str, Any] | None) -> None:
    _same(metrics)


FIDELITY = {
    "evaluation": {
        "before": {"samples": 360, "split": "test", "fidelity": {"top1_agreement": 1.0}},
        "after": {
            "samples": 360,
            "split": "test",
            "labels": "predictions",
            "fidelity": {"top1_agreement": 0.9361, "relative_output_error": 0.2125},
        },
    }
}


def test_fidelity_to_the_upload_is_read_by_both_readers() -> None:
    h = _same(FIDELITY)
    assert (h.agreement_after, h.output_error_after, h.fidelity_split) == (0.9361, 0.2125, "test")
    assert h.error_after is None and h.eval_samples == 360


def test_the_submit_table_prints_the_fidelity() -> None:
    from rich.console import Console

    from client.cli import _headline_table
    from client.models import Job

    job = Job.from_json({"id": "j", "state": "succeeded", "metrics": FIDELITY})
    console = Console(width=200, record=True)
    console.print(_headline_table(job))
    text = console.export_text()
    assert "top-1 agreement with the upload" in text and "93.61% (360 samples, test split)" in text
    assert "relative output error" in text and "0.2125" in text


def test_sizes_print_the_same() -> None:
    for n in (None, 0, 1023, 1024, 1536, 10 * 1024**2, 3 * 1024**3, 5 * 1024**4):
        assert client_headline.human_bytes(n) == core_human_bytes(n)


def test_job_warnings_say_when_an_onnx_upload_s_names_do_not_map_back() -> None:
    """docs/bring-your-own-model.md tried as a user: a graph exported with the BatchNorms folded gave a
    model.pth that does not load into the user's class, and `mcs submit` said nothing about it."""
    names = ["stem.0.bias", "res.0.bias", "res.3.bias", "fc.bias"]
    metrics = {
        "source": {"kind": "onnx", "unmapped_names": names},
        "evaluation": {"data": {"warnings": ["w"]}},
    }
    warnings = client_headline.job_warnings(metrics)
    assert warnings[0] == "w" and len(warnings) == 2
    assert "4 tensors" in warnings[1] and "stem.0.bias, res.0.bias, res.3.bias, ..." in warnings[1]
    assert "optimize=False" in warnings[1] and "do_constant_folding=False" in warnings[1]
    assert client_headline.job_warnings({"source": {"kind": "onnx"}}) == []
