"""A whole search in one process (the library path, `mcs compress` with a `search` field) on digits:
files, the section, a failed trial as a row, sensitivity with its suggested spec."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from compression_core.data import DataSplits
from compression_core.job.pipeline import compress_file
from compression_core.spec import Spec
from compression_core.train import save_state_dict, train_reference
from compression_core.training.finetune import RetrainConfig

MLP = {"arch": "mlp", "kwargs": {"sizes": [64, 32, 10]}}


@pytest.fixture(scope="module")
def model_file(digits: DataSplits, one_thread: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    reference = train_reference(MLP, digits, RetrainConfig(epochs=6, lr=0.05, batch_size=32))
    return save_state_dict(reference.model, tmp_path_factory.mktemp("ref") / "mlp.safetensors")


def test_a_grid_with_a_failing_trial_reports_it_and_goes_on(
    model_file: Path, digits: DataSplits, tmp_path: Path
) -> None:
    spec = Spec.model_validate(
        {
            "model": MLP,
            "data": {"builtin": "digits"},
            "rules": [{"select": {"name": "*.weight"}, "steps": [{"type": "prune", "keep": 100}]}],
            "search": {"mode": "grid", "parameters": {"rules.0.steps.0.keep": [100, 300, 10**6]}},
        }
    )
    metrics = compress_file(model_file, spec, tmp_path)
    section = metrics["search"]
    states = [t["state"] for t in section["trials"]]
    assert states == ["succeeded", "succeeded", "failed"]
    assert "keep" in section["trials"][2]["reason"]
    assert section["best"] in (0, 1) and section["counts"] == {"trials": 3, "succeeded": 2, "failed": 1}
    assert {p.name for p in tmp_path.iterdir()} >= {
        "model.bin",
        "model.pth",
        "metrics.json",
        "search.csv",
        "pareto.png",
    }
    assert not (tmp_path / "trials").exists()
    rows = list(csv.DictReader((tmp_path / "search.csv").open()))
    assert [r["state"] for r in rows] == states and rows[section["best"]]["best"] == "1"
    written = json.loads((tmp_path / "metrics.json").read_text())
    best = section["trials"][section["best"]]
    assert written["totals"]["ratio"] == pytest.approx(best["ratio"])
    assert written["evaluation"]["after"]["error"] == pytest.approx(best["error_after"])
    # chosen on the data set's own validation split (held out of training), reported on the test split
    assert digits.validation is not None
    assert written["search_trial"]["validation"]["after"]["samples"] == len(digits.validation)
    # the trial's job validated on that same split too: none carved out of its training data, no warning
    data = written["evaluation"]["data"]
    assert data["validation_from"] == "x_val" and data["warnings"] == []
    assert data["sizes"]["validation"] == len(digits.validation)


def test_sensitivity_tries_each_layer_alone_then_the_suggestion(model_file: Path, tmp_path: Path) -> None:
    spec = Spec.model_validate(
        {
            "model": MLP,
            "data": {"builtin": "digits"},
            "rules": [{"select": {"name": "*.weight"}, "steps": [{"type": "prune", "sparsity": 0.5}]}],
            "search": {
                "mode": "sensitivity",
                "values": [0.3, 0.95],
                "max_error_increase": 1.0,
                "max_trials": 5,
            },
        }
    )
    section = compress_file(model_file, spec, tmp_path)["search"]
    trials = section["trials"]
    assert [(t["label"], t["parameters"].get("value")) for t in trials[:4]] == [
        ("fc1.weight", 0.3),
        ("fc1.weight", 0.95),
        ("fc2.weight", 0.3),
        ("fc2.weight", 0.95),
    ]
    table = section["sensitivity"]
    assert table["layers"] == ["fc1.weight", "fc2.weight"] and len(table["validation_error"][0]) == 2
    suggested = table["suggested"]
    for layer, value in suggested.items():  # the most compressed value within 1 point, per layer
        row = [t for t in trials if t["label"] == layer]
        ok = [t for t in row if t["validation_error_after"] - t["validation_error_before"] <= 0.01 + 1e-12]
        assert value == max(ok, key=lambda t: t["ratio"])["parameters"]["value"]
    if suggested:
        assert trials[-1]["label"] == "suggested" and section["best"] == len(trials) - 1
    assert (tmp_path / "sensitivity.png").read_bytes()[:4] == b"\x89PNG"
