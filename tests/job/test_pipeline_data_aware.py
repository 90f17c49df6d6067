from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from compression_core.errors import InputError, SpecError
from compression_core.evaluate import evaluate
from compression_core.format import decode_records, decode_state_dict
from compression_core.job.pipeline import compress_file
from compression_core.models import build_model, load_into
from compression_core.spec import parse_spec
from compression_core.train import save_state_dict, train_reference
from compression_core.training.finetune import RetrainConfig

MLP = {"arch": "mlp", "kwargs": {"sizes": [64, 32, 10]}}
RULES = [
    {
        "select": {"name": "fc*.weight"},
        "steps": [{"type": "prune", "sparsity": 0.8}, {"type": "quantize", "k": 8}],
    }
]


@pytest.fixture(scope="module")
def reference(digits, tmp_path_factory):
    torch.manual_seed(0)
    result = train_reference(MLP, digits, RetrainConfig(epochs=6, lr=0.05, batch_size=32))
    return save_state_dict(result.model, tmp_path_factory.mktemp("ref") / "mlp.safetensors")


def _spec(**fields):
    return parse_spec(json.dumps({"rules": RULES, **fields}))


def test_retrain_spec_runs_end_to_end(reference, digits, tmp_path):
    spec = _spec(
        model=MLP,
        data={"builtin": "digits"},
        retrain={
            "prune_schedule": [0.5, 1.0],
            "prune": {"epochs": 1, "lr": 0.02, "batch_size": 32},
            "finetune": {"epochs": 1, "lr": 0.01, "batch_size": 32},
        },
    )
    stages = []
    metrics = compress_file(
        reference, spec, tmp_path, progress=lambda p: stages.append((p.stage, p.fraction))
    )
    fractions = [f for _, f in stages]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert {"prune-retrain 1/2", "prune-retrain 2/2", "finetune"} <= {s for s, _ in stages}
    history = metrics["training"]["history"]
    assert [h["stage"] for h in history] == ["prune-retrain 1/2", "prune-retrain 2/2", "finetune"]
    # per-epoch errors come from the validation split; only evaluation.before/after report the test split
    assert (metrics["training"]["split"], metrics["training"]["n"]) == ("validation", 144)
    assert all(h["validation_samples"] == 144 and h["validation_error"] is not None for h in history)
    assert not any(key.startswith("test_") for h in history for key in h)  # named for their split
    before, after = metrics["evaluation"]["before"], metrics["evaluation"]["after"]
    assert before["samples"] == after["samples"] == 360
    assert before["split"] == after["split"] == "test" and before["n"] == after["n"] == 360
    assert metrics["evaluation"]["data"]["sizes"] == {"train": 1293, "validation": 144, "test": 360}
    assert metrics["evaluation"]["data"]["chosen_on"] == "validation"
    # evaluation.after describes exactly the artifact the user downloads
    model = load_into(build_model(MLP), decode_state_dict(tmp_path / "model.bin"))
    assert evaluate(model, digits.test, timing=False).error == pytest.approx(after["error"])
    assert after["error"] <= before["error"] + 0.05
    records, _ = decode_records((tmp_path / "model.bin").read_bytes())
    by_name = {r.name: r for r in records}
    assert by_name["fc1.weight"].positions.numel() == round(2048 * 0.2)
    assert by_name["fc1.weight"].codebook.numel() <= 8
    assert (
        json.loads((tmp_path / "metrics.json").read_text())["evaluation"]["after"]["error"] == after["error"]
    )


def test_model_and_data_without_retrain_only_evaluate(reference, tmp_path):
    metrics = compress_file(reference, _spec(model=MLP, data={"builtin": "digits"}), tmp_path)
    assert metrics["training"]["history"] == []
    assert set(metrics["evaluation"]) >= {"before", "after", "data"}


def test_uploaded_data_file(reference, digits, tmp_path):
    x, y = digits.test.tensors
    np.savez(tmp_path / "d.npz", x_train=x.numpy(), y_train=y.numpy())
    spec = _spec(model=MLP, data={"upload": True}, retrain={"finetune": {"epochs": 1, "batch_size": 64}})
    metrics = compress_file(reference, spec, tmp_path / "out", data_path=tmp_path / "d.npz")
    # no test split uploaded: results are reported on the carved validation split, never on training data
    assert metrics["evaluation"]["data"]["evaluated_on"].startswith("validation")
    assert (
        metrics["evaluation"]["after"]["n"] == 36 and metrics["evaluation"]["after"]["split"] == "validation"
    )
    # the validation split came out of x_train, which the uploaded model has usually seen: said plainly
    data = metrics["evaluation"]["data"]
    assert data["validation_from"] == "x_train"
    assert len(data["warnings"]) == 1 and "carved from the uploaded x_train" in data["warnings"][0]
    assert "x_val" in data["warnings"][0]
    from compression_core.report import write_job_report

    write_job_report(tmp_path / "out", reference)
    page = (tmp_path / "out" / "report.html").read_text()
    assert '<p class="warning">Warning: the validation split (36 samples) was carved' in page
    with pytest.raises(SpecError, match="no data file was uploaded"):
        compress_file(reference, spec, tmp_path / "out2")


def test_uploaded_validation_split_or_a_builtin_needs_no_warning(reference, digits, tmp_path):
    x, y = digits.test.tensors
    half = len(y) // 2
    arrays = {"x_train": x[:half].numpy(), "y_train": y[:half].numpy()}
    np.savez(tmp_path / "d.npz", **arrays, x_val=x[half:].numpy(), y_val=y[half:].numpy())
    uploaded = _spec(model=MLP, data={"upload": True})
    data = compress_file(reference, uploaded, tmp_path / "a", data_path=tmp_path / "d.npz")["evaluation"][
        "data"
    ]
    assert data["validation_from"] == "x_val" and data["warnings"] == []
    builtin = _spec(model=MLP, data={"builtin": "digits"})
    assert compress_file(reference, builtin, tmp_path / "b")["evaluation"]["data"]["warnings"] == []


def test_spec_checks_of_the_data_aware_fields(reference, tmp_path):
    with pytest.raises(SpecError, match="retrain` needs `data`"):
        _spec(model=MLP, retrain={"finetune": {"epochs": 1}})
    with pytest.raises(SpecError, match="need `model`"):
        _spec(data={"builtin": "digits"})
    with pytest.raises(SpecError, match="prune_schedule"):
        _spec(model=MLP, data={"builtin": "digits"}, retrain={"prune_schedule": [0.5]})
    with pytest.raises(InputError, match="mis-shaped keys"):
        compress_file(reference, _spec(model={"arch": "mlp", "kwargs": {"sizes": [64, 16, 10]}}), tmp_path)


def test_data_free_specs_are_unchanged(reference, tmp_path):
    metrics = compress_file(reference, _spec(), tmp_path)
    assert "evaluation" not in metrics and "training" not in metrics


def test_a_run_without_a_validation_split_names_its_history_for_the_split_it_watched(reference, tmp_path):
    """`data.validation: 0`: the epochs are monitored on the test split, and the history says so."""
    spec = _spec(
        model=MLP,
        data={"builtin": "digits", "validation": 0},
        retrain={"finetune": {"epochs": 1, "lr": 0.01, "batch_size": 32}},
    )
    training = compress_file(reference, spec, tmp_path)["training"]
    assert (training["split"], training["n"]) == ("test", 360)
    assert [h["test_samples"] for h in training["history"]] == [360]
    assert not any(key.startswith("validation_") for key in training["history"][0])
