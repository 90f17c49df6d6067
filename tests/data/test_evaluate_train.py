from __future__ import annotations

import pytest
import torch
import typer
from typer.testing import CliRunner

from compression_core import train_cli
from compression_core.evaluate import evaluate
from compression_core.io import load_state_dict
from compression_core.models import build_model, load_into
from compression_core.train import train_reference
from compression_core.training.finetune import RetrainConfig


def test_evaluation_numbers_are_consistent(digits):
    model = build_model({"arch": "mlp", "kwargs": {"sizes": [64, 16, 10]}})
    result = evaluate(model, digits.test, timing_runs=2, warmup_runs=1)
    assert result.samples == 360
    assert result.top1 == pytest.approx(1 - result.error)
    assert result.top5 >= result.top1
    confusion = torch.tensor(result.confusion)
    assert confusion.sum() == 360 and confusion.trace() == round(result.top1 * 360)
    assert result.latency_ms_per_batch > 0 and result.latency_ms_per_sample * 64 == pytest.approx(
        result.latency_ms_per_batch
    )
    assert result.memory_source in ("rss_peak_delta", "tracemalloc") and result.peak_memory_bytes >= 0
    assert result.loss > 0


def test_reference_training_learns_digits(digits):
    result = train_reference(
        {"arch": "mlp", "kwargs": {"sizes": [64, 32, 10]}},
        digits,
        RetrainConfig(epochs=3, lr=0.05, batch_size=32),
    )
    assert result.evaluation.error < 0.2
    # training is monitored on the validation split; the final evaluation reports the test split
    assert len(result.history) == 3 and result.history[-1].validation_samples == len(digits.validation) == 144
    assert result.evaluation.samples == len(digits.test) == 360


def test_mcs_train_command_writes_a_loadable_state_dict(tmp_path):
    app = typer.Typer()
    train_cli.register(app)
    app.command("noop")(lambda: None)  # a second command keeps `train` a subcommand
    out = tmp_path / "m.safetensors"
    result = CliRunner().invoke(
        app,
        [
            "train",
            "mlp",
            "--data",
            "digits",
            "-o",
            str(out),
            "--epochs",
            "2",
            "--kwargs",
            '{"sizes": [64, 16, 10]}',
            "--lr",
            "0.05",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "/360 samples wrong" in result.output
    load_into(build_model({"arch": "mlp", "kwargs": {"sizes": [64, 16, 10]}}), load_state_dict(out))
    bad = CliRunner().invoke(app, ["train", "lenet300", "--data", "digits", "-o", str(out), "--epochs", "1"])
    assert bad.exit_code == 2 and "do not fit the model" in bad.output


def test_a_reference_is_not_trained_on_data_without_labels(tmp_path):
    import numpy as np

    from compression_core.data import load_upload
    from compression_core.errors import InputError
    from compression_core.train import train_reference

    np.savez(tmp_path / "x.npz", x_train=np.zeros((20, 64), np.float32))
    with pytest.raises(InputError, match="needs labels"):
        train_reference({"arch": "mlp", "kwargs": {"sizes": [64, 10]}}, load_upload(tmp_path / "x.npz"))
