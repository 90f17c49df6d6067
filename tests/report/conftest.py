from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from compression_core.io import load_state_dict, save_state_dict
from compression_core.job.pipeline import compress_file
from compression_core.spec import example_spec


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real compression job: LeNet-300-100-shaped random weights through the Deep Compression example."""
    root = tmp_path_factory.mktemp("pipeline")
    g = torch.Generator().manual_seed(0)
    shapes = {"fc1": (300, 784), "fc2": (100, 300), "fc3": (10, 100)}
    state = {}
    for name, (out_f, in_f) in shapes.items():
        state[f"{name}.weight"] = torch.randn(out_f, in_f, generator=g) / in_f**0.5
        state[f"{name}.bias"] = torch.randn(out_f, generator=g) * 0.01
    model = root / "model.safetensors"
    save_state_dict(state, model)
    out = root / "out"
    compress_file(model, example_spec("deep-compression-lenet300"), out)
    return {
        "metrics": json.loads((out / "metrics.json").read_text()),
        "before": load_state_dict(model),
        "after": load_state_dict(out / "model.pth"),
        "out": out,
        "root": root,
    }


@pytest.fixture
def history() -> list[dict[str, Any]]:
    """Per-epoch records as compression_core.training.finetune.EpochStats.to_dict() gives them."""
    return [
        {
            "epoch": e,
            "epochs": 3,
            "lr": 0.01,
            "train_loss": 1.0 / e,
            "train_accuracy": 0.9 + e / 100,
            "validation_error": 0.05 - e / 100,
            "validation_samples": 1000,
            "stage": "retrain",
        }
        for e in (1, 2, 3)
    ]


@pytest.fixture
def report_dir(tmp_path: Path) -> Path:
    return tmp_path / "report"
