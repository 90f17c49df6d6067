"""Issue 4 through the service: a model + an uploaded data set go in, the worker evaluates, compresses and
retrains, and the job reports accuracy before and after. Real API, real Celery worker over Redis."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from svc_helpers import wait_for, worker_stack

from compression_core.data import load_builtin
from compression_core.evaluate import evaluate
from compression_core.format import decode_state_dict
from compression_core.models import build_model, load_into
from compression_core.train import save_state_dict, train_reference
from compression_core.training.finetune import RetrainConfig

MLP = {"arch": "mlp", "kwargs": {"sizes": [64, 32, 10]}}
RULES = [
    {
        "select": {"name": "fc1.weight"},
        "steps": [{"type": "prune", "sparsity": 0.8}, {"type": "quantize", "k": 8}],
    },
    {"select": {"name": "fc2.weight"}, "steps": [{"type": "quantize", "k": 8}]},
]
RETRAIN = {
    "prune_schedule": [0.5, 1.0],
    "prune": {"epochs": 2, "lr": 0.02, "batch_size": 32},
    "finetune": {"epochs": 3, "lr": 0.01, "batch_size": 32},
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str, session_tag: str) -> Iterator[TestClient]:
    with worker_stack(tmp_path_factory.mktemp("data-aware"), redis_url, f"da-{session_tag}") as started:
        yield started.client


@pytest.fixture(scope="module")
def upload(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A reference MLP trained on scikit-learn's digits, and the same digits as an .npz upload."""
    digits = load_builtin("digits")
    torch.manual_seed(0)
    reference = train_reference(MLP, digits, RetrainConfig(epochs=6, lr=0.05, batch_size=32))
    model = save_state_dict(reference.model, tmp_path_factory.mktemp("ref") / "mlp.safetensors")
    (x_train, y_train), (x_test, y_test) = digits.train.tensors, digits.test.tensors
    buffer = io.BytesIO()
    np.savez(
        buffer, x_train=x_train.numpy(), y_train=y_train.numpy(), x_test=x_test.numpy(), y_test=y_test.numpy()
    )
    return model, buffer.getvalue()


def run_job(client: TestClient, upload: tuple[Path, bytes], spec: dict) -> dict:
    model, data = upload
    response = client.post(
        "/jobs",
        files={"model": (model.name, model.read_bytes()), "data": ("digits.npz", data)},
        data={"spec": json.dumps(spec)},
    )
    assert response.status_code == 202, response.text
    job = wait_for(client, response.json()["id"], timeout=180)
    assert job["state"] == "succeeded", job
    return job


def test_retraining_through_the_service_holds_accuracy(stack: TestClient, upload, tmp_path: Path) -> None:
    base = {"model": MLP, "data": {"upload": True}, "rules": RULES}
    direct = run_job(stack, upload, base)["metrics"]["evaluation"]
    job = run_job(stack, upload, {**base, "retrain": RETRAIN})
    evaluation = job["metrics"]["evaluation"]
    before, after = evaluation["before"], evaluation["after"]
    assert before["samples"] == after["samples"] == 360
    # the reference is the same in both jobs; retraining must recover what direct compression loses
    assert direct["before"]["error"] == before["error"]
    assert after["error"] <= direct["after"]["error"]
    assert after["error"] <= before["error"] + 0.03  # holds accuracy: at most ~11 of 360 samples worse
    assert [h["stage"] for h in job["metrics"]["training"]["history"]][-1] == "finetune"

    # the reported "after" is the accuracy of exactly the artifact the client downloads
    bin_bytes = stack.get(f"/jobs/{job['id']}/artifacts/model.bin").content
    (tmp_path / "model.bin").write_bytes(bin_bytes)
    model = load_into(build_model(MLP), decode_state_dict(tmp_path / "model.bin"))
    assert evaluate(model, load_builtin("digits").test, timing=False).error == pytest.approx(after["error"])
    weights = decode_state_dict(tmp_path / "model.bin")["fc1.weight"]
    assert int((weights != 0).sum()) == round(weights.numel() * 0.2)
    assert weights[weights != 0].unique().numel() <= 8


def test_deployable_artifacts_are_published_and_load(stack: TestClient, upload, tmp_path: Path) -> None:
    """Issue 12 through the worker: physical structured pruning + int8 publish architecture.json,
    model.onnx and model.int8.onnx; what the client downloads rebuilds with load_model."""
    from compression_core import load_model

    step = {"type": "structured", "sparsity": 0.5}
    spec = {
        "model": MLP,
        "data": {"upload": True},
        "rules": [{"select": {"name": "fc1.weight"}, "steps": [step]}],
        "int8": {"calibration_samples": 128},
    }
    job = run_job(stack, upload, spec)
    names = [a["name"] for a in job["artifacts"]]
    assert names == [
        "model.pth",
        "model.bin",
        "metrics.json",
        "report.html",
        "architecture.json",
        "model.onnx",
        "model.int8.onnx",
    ]
    for name in ("model.pth", "architecture.json"):
        (tmp_path / name).write_bytes(stack.get(f"/jobs/{job['id']}/artifacts/{name}").content)
    model = load_model(tmp_path)
    assert model.fc1.weight.shape == (16, 64)
    metrics = job["metrics"]
    after = evaluate(model, load_builtin("digits").test, timing=False)
    assert after.error == pytest.approx(metrics["evaluation"]["after"]["error"])
    assert metrics["deployment"]["int8"]["quantized"] == ["fc1", "fc2"]
    assert "<h2>Deployment</h2>" in stack.get(f"/jobs/{job['id']}/artifacts/report.html").text


def test_data_without_labels_is_measured_by_fidelity_through_the_service(stack: TestClient, upload) -> None:
    """Issue 19: `x_*` arrays only; the job reports fidelity to the upload, before and after, on the named
    split, in metrics, in report.html, and a budget search in fidelity keeps its agreement."""
    model, _ = upload
    digits = load_builtin("digits")
    buffer = io.BytesIO()
    np.savez(buffer, x_train=digits.train.tensors[0].numpy(), x_test=digits.test.tensors[0].numpy())
    unlabelled = (model, buffer.getvalue())
    job = run_job(stack, unlabelled, {"model": MLP, "data": {"upload": True}, "rules": RULES})
    evaluation = job["metrics"]["evaluation"]
    assert evaluation["data"]["labels"] == "predictions" and "error" not in evaluation["after"]
    assert evaluation["before"]["fidelity"]["top1_agreement"] == 1.0
    after = evaluation["after"]
    assert (after["split"], after["n"], after["fidelity"]["samples"]) == ("test", 360, 360)
    assert 0.5 < after["fidelity"]["top1_agreement"] < 1 and after["fidelity"]["relative_output_error"] > 0
    page = stack.get(f"/jobs/{job['id']}/artifacts/report.html").text
    assert "top-1 agreement with the upload" in page and "test split" in page
    search = {
        "mode": "budget",
        "parameters": {"rules.0.steps.0.sparsity": {"low": 0.3, "high": 0.99}},
        "min_top1_agreement": 0.85,
        "max_trials": 3,
    }
    found = run_job(
        stack, unlabelled, {"model": MLP, "data": {"upload": True}, "rules": RULES, "search": search}
    )
    section = found["metrics"]["search"]
    assert section["budget"]["measure"] == "agreement" and section["budget"]["met"] is True
    trials = section["trials"]
    assert trials[section["best"]]["validation_agreement_after"] >= 0.85
    assert any(t["validation_agreement_after"] < 0.85 for t in trials)  # the budget chose among them
    children = stack.get(f"/jobs/{found['id']}").json()["children"]
    assert [c["validation_agreement"] for c in children] == [t["validation_agreement_after"] for t in trials]
