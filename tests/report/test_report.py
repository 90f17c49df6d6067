from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from compression_core.report import headline, layer_rows, render_report, write_job_report, write_report
from compression_core.report.plots import MAX_LAYERS, history_series, plotted_layers

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _inline_images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_report_from_a_real_pipeline_run_is_complete(pipeline_run: dict[str, Any], history: list) -> None:
    metrics = pipeline_run["metrics"]
    page, pngs = render_report(metrics, pipeline_run["before"], pipeline_run["after"], history)

    assert set(pngs) == {"weights_hist.png", "bits_per_layer.png", "sparsity_per_layer.png", "history.png"}
    assert all(data.startswith(PNG_MAGIC) for data in pngs.values())
    assert sorted(_inline_images(page)) == sorted(pngs.values())  # every plot inlined, nothing else
    # one table row per tensor of the model, with the method the spec applied
    rows = re.findall(r'<tr><td class="name">([^<]+)</td><td class="l">([^<]+)</td>', page)
    assert [name for name, _ in rows] == [t["name"] for t in metrics["tensors"]]
    assert dict(rows)["fc1.weight"].startswith("prune+quantize")
    header = re.search(r"<thead>(.*?)</thead>", page)
    first_row = re.search(r"<tbody><tr>(.*?)</tr>", page)
    assert header and first_row
    assert header[1].count("<th") == first_row[1].count("<td") == 11
    # headline: the ratio metrics.json reports, shown with two decimals
    assert f"{metrics['totals']['ratio']:.2f}×" in page


def test_report_is_self_contained(pipeline_run: dict[str, Any], history: list) -> None:
    page, _ = render_report(pipeline_run["metrics"], pipeline_run["before"], pipeline_run["after"], history)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE)
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page.lower()
    assert "<link" not in page.lower()
    assert "@import" not in page and "url(" not in page


def test_layer_rows_follow_metrics_and_tensors(pipeline_run: dict[str, Any]) -> None:
    metrics, after = pipeline_run["metrics"], pipeline_run["after"]
    rows = {r.name: r for r in layer_rows(metrics, pipeline_run["before"], after)}
    fc1 = rows["fc1.weight"]
    assert fc1.params == 300 * 784
    assert fc1.nonzero == int(after["fc1.weight"].count_nonzero())
    assert fc1.sparsity == pytest.approx(0.92, abs=0.005)  # the spec keeps 8%
    entry = next(t for t in metrics["tensors"] if t["name"] == "fc1.weight")
    assert fc1.bits_after == entry["bits"]["coded"]
    assert fc1.ratio == pytest.approx(entry["ratio"])


def test_headline_reads_the_core_metrics_layout(pipeline_run: dict[str, Any]) -> None:
    metrics = pipeline_run["metrics"]
    h = headline(metrics)
    assert h.ratio == pytest.approx(metrics["totals"]["ratio"])
    assert h.size_after_bytes == (pipeline_run["out"] / "model.bin").stat().st_size
    assert h.size_before_bytes == metrics["totals"]["original_bits"] / 8
    assert h.params_total == 266_610  # LeNet-300-100 weights + biases
    assert h.error_before is None and h.error_increase is None  # data-free job: no evaluation


def test_headline_error_from_evaluation_or_accuracy() -> None:
    h = headline({"evaluation": {"before": {"error": 0.04, "samples": 1000}, "after": {"error": 0.047}}})
    assert h.error_increase == pytest.approx(0.007)
    assert h.eval_samples == 1000
    assert headline(
        {"evaluation": {"before": {"accuracy": 0.9}, "after": {"accuracy": 0.8}}}
    ).error_increase == (pytest.approx(0.1))


def test_render_tolerates_missing_everything() -> None:
    page, pngs = render_report({}, None, None, None)
    assert pngs == {}
    assert "<table>" in page and "Compression report" in page
    page, pngs = render_report(None, {"w": torch.ones(3, 3)}, None, None)
    assert "weights_hist.png" in pngs and '<td class="name">w</td>' in page


def test_names_are_escaped() -> None:
    page, _ = render_report({"tensors": [{"name": "<script>x</script>", "params": 4, "method": "dense"}]})
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_plots_are_capped_to_the_largest_layers() -> None:
    before = {f"layer{i}.weight": torch.randn(10 + i, 10) for i in range(MAX_LAYERS + 8)}
    rows = layer_rows(None, before, before)
    shown = plotted_layers(rows)
    assert len(shown) == MAX_LAYERS
    assert {r.name for r in shown} == {f"layer{i}.weight" for i in range(8, MAX_LAYERS + 8)}
    page, _ = render_report(None, before, before)
    assert f"Plots show the {MAX_LAYERS} largest of {MAX_LAYERS + 8} layers" in page


def test_history_shapes() -> None:
    as_dict = history_series({"loss": [3.0, 2.0], "accuracy": [0.5, 0.7], "note": "x"})
    assert as_dict == {"loss": [3.0, 2.0], "accuracy": [0.5, 0.7]}
    epochs = [{"epoch": 1, "train_loss": 2.0, "stage": "a"}, {"epoch": 2, "train_loss": 1.0, "stage": "a"}]
    assert history_series(epochs) == {"train_loss": [2.0, 1.0]}
    assert history_series({"epochs": epochs}) == {"train_loss": [2.0, 1.0]}
    assert history_series(None) == {}


def test_write_report_writes_files_atomically(
    pipeline_run: dict[str, Any], history: list, report_dir: Path
) -> None:
    paths = write_report(
        report_dir, pipeline_run["metrics"], pipeline_run["before"], pipeline_run["after"], history
    )
    assert paths[-1] == report_dir / "report.html"
    assert sorted(p.name for p in (report_dir / "plots").iterdir()) == [
        "bits_per_layer.png",
        "history.png",
        "sparsity_per_layer.png",
        "weights_hist.png",
    ]
    assert not [p for p in report_dir.rglob("*") if p.name.startswith(".")]  # no temporary left behind
    page = (report_dir / "report.html").read_text(encoding="utf-8")
    assert sorted(_inline_images(page)) == sorted(p.read_bytes() for p in (report_dir / "plots").iterdir())


def test_write_job_report_reads_a_finished_run(pipeline_run: dict[str, Any]) -> None:
    out = pipeline_run["out"]
    paths = write_job_report(out, pipeline_run["root"] / "model.safetensors")
    assert (out / "report.html") in paths and (out / "plots" / "weights_hist.png") in paths
    page = (out / "report.html").read_text(encoding="utf-8")
    assert '<td class="name">fc3.weight</td>' in page
    assert "history.png" not in {p.name for p in paths}  # a data-free run has no training history


def test_data_aware_metrics_show_errors_and_training_history(
    pipeline_run: dict[str, Any], history: list
) -> None:
    """The layout compression_core.job adds: evaluation.{before,after,data} and training.history."""
    metrics = dict(pipeline_run["metrics"])
    metrics["evaluation"] = {
        "before": {"samples": 360, "error": 0.05, "top1": 0.95},
        "after": {"samples": 360, "error": 0.0625, "top1": 0.9375},
        "data": {"name": "digits", "sizes": {"train": 1437, "test": 360}, "evaluated_on": "test"},
    }
    metrics["training"] = {"history": history}
    page, pngs = render_report(metrics, pipeline_run["before"], pipeline_run["after"])
    assert "history.png" in pngs
    assert "5.00%" in page and "6.25%" in page and "+1.25 pts" in page
    assert "Errors measured on 360 samples of digits, test split." in page
