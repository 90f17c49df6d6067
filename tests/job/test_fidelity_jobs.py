"""Jobs whose data has no labels, or whose model is not a classifier (compression_core/job/context.py):
fidelity to the uploaded model before and after, with the split and sample counts named; the upload's
top-1 predictions become the labels that training fits; no labels and no class scores refuse training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from compression_core.errors import InputError
from compression_core.fidelity import measure, reference_outputs
from compression_core.format import decode_state_dict
from compression_core.job.pipeline import compress_file
from compression_core.models import build_model, load_into
from compression_core.spec import parse_spec
from compression_core.train import save_state_dict, train_reference
from compression_core.training.finetune import RetrainConfig

MLP = {"arch": "mlp", "kwargs": {"sizes": [64, 32, 10]}}
REGRESSOR = {"arch": "mlp", "kwargs": {"sizes": [64, 16, 1]}}
PRUNE = [{"select": {"name": "fc*.weight"}, "steps": [{"type": "prune", "sparsity": 0.7}]}]


@pytest.fixture(scope="module")
def reference(digits, tmp_path_factory):
    torch.manual_seed(0)
    result = train_reference(MLP, digits, RetrainConfig(epochs=4, lr=0.05, batch_size=32))
    return save_state_dict(result.model, tmp_path_factory.mktemp("ref") / "mlp.safetensors")


@pytest.fixture(scope="module")
def unlabelled(digits, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "x-only.npz"
    np.savez(path, x_train=digits.train.tensors[0].numpy(), x_test=digits.test.tensors[0].numpy())
    return path


def _spec(**fields):
    return parse_spec(json.dumps({"rules": PRUNE, **fields}))


def test_without_labels_the_job_reports_fidelity_before_and_after(reference, unlabelled, digits, tmp_path):
    spec = _spec(model=MLP, data={"upload": True})
    metrics = compress_file(reference, spec, tmp_path, data_path=unlabelled)
    before, after = metrics["evaluation"]["before"], metrics["evaluation"]["after"]
    for section in (before, after):
        assert section["split"] == "test" and section["n"] == section["samples"] == 360
        assert section["labels"] == "predictions" and "error" not in section
    assert before["fidelity"]["relative_output_error"] == 0.0 and before["fidelity"]["top1_agreement"] == 1.0
    fidelity = after["fidelity"]
    assert fidelity["samples"] == 360 and fidelity["output_shape"] == [10]
    assert 0 < fidelity["relative_output_error"] < 1 and 0.5 < fidelity["top1_agreement"] < 1.0
    assert metrics["evaluation"]["data"]["labels"] == "predictions"
    # the numbers describe model.pth, measured against the upload on x_test
    upload = load_into(build_model(MLP), load_file(str(reference)))
    after_model = load_into(build_model(MLP), decode_state_dict(tmp_path / "model.bin"))
    x = digits.test.tensors[0]
    again = measure(after_model, x, reference_outputs(upload, x))
    assert again.top1_agreement == pytest.approx(fidelity["top1_agreement"])
    assert again.relative_output_error == pytest.approx(fidelity["relative_output_error"], rel=1e-5)
    assert json.loads((tmp_path / "metrics.json").read_text())["evaluation"]["after"]["fidelity"] == fidelity


def test_retraining_without_labels_fits_the_uploads_predictions(reference, unlabelled, tmp_path):
    spec = _spec(
        model=MLP,
        data={"upload": True},
        retrain={"prune_schedule": [1.0], "prune": {"epochs": 1, "lr": 0.01, "batch_size": 32}},
    )
    plain = compress_file(
        reference, _spec(model=MLP, data={"upload": True}), tmp_path / "a", data_path=unlabelled
    )
    retrained = compress_file(reference, spec, tmp_path / "b", data_path=unlabelled)
    assert retrained["training"]["history"]  # it trained, on the upload's top-1 as labels
    agreement = retrained["evaluation"]["after"]["fidelity"]["top1_agreement"]
    assert agreement >= plain["evaluation"]["after"]["fidelity"]["top1_agreement"]


def test_labelled_jobs_report_fidelity_beside_the_error(reference, tmp_path):
    metrics = compress_file(reference, _spec(model=MLP, data={"builtin": "digits"}), tmp_path)
    after = metrics["evaluation"]["after"]
    assert after["labels"] == "data" and after["error"] is not None
    assert 0.5 < after["fidelity"]["top1_agreement"] < 1.0


def test_a_model_that_is_not_a_classifier_is_measured_by_output_error_and_cannot_train(digits, tmp_path):
    torch.manual_seed(0)
    model = save_state_dict(build_model(REGRESSOR), tmp_path / "reg.safetensors")
    data = tmp_path / "x.npz"
    np.savez(data, x_train=digits.train.tensors[0].numpy()[:200], x_test=digits.test.tensors[0].numpy()[:50])
    metrics = compress_file(
        model, _spec(model=REGRESSOR, data={"upload": True}), tmp_path / "a", data_path=data
    )
    fidelity = metrics["evaluation"]["after"]["fidelity"]
    assert fidelity["top1_agreement"] is None and fidelity["output_shape"] == [1]
    assert fidelity["relative_output_error"] > 0 and metrics["evaluation"]["after"]["labels"] == "none"
    retrain = _spec(
        model=REGRESSOR, data={"upload": True}, retrain={"prune": {"epochs": 1}, "prune_schedule": [1.0]}
    )
    with pytest.raises(InputError, match="retrain train on labels; the data has none"):
        compress_file(model, retrain, tmp_path / "b", data_path=data)
