"""Issue 19 through the service: a model class that exists only in this test (tests/sources/onnx/tiny.py,
never registered on the server) is exported to ONNX and uploaded; every method runs on it and the results
load back into the user's own class or run in onnxruntime. Bad ONNX files are refused at POST /jobs with
their 4xx before anything is queued. Real API, real Celery worker over Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from fastapi.testclient import TestClient
from svc_helpers import wait_for, worker_stack

from compression_core.data import load_builtin
from compression_core.deploy.onnx_export import ort_session
from tests.sources.onnx.tiny import TinyNet, accuracy, export, trained

ONNX_MODEL = {"arch": "onnx"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str, session_tag: str) -> Iterator[TestClient]:
    with worker_stack(tmp_path_factory.mktemp("onnx-stack"), redis_url, f"onnx-{session_tag}") as started:
        yield started.client


@pytest.fixture(scope="module")
def uploaded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    digits = load_builtin("digits")
    model = trained(digits)
    path = export(model, digits.train.tensors[0][:1], tmp_path_factory.mktemp("onnx") / "garment.onnx")
    return path, accuracy(model, digits)


def _submit(client: TestClient, path: Path, spec: dict) -> dict:
    response = client.post(
        "/jobs", files={"model": (path.name, path.read_bytes())}, data={"spec": json.dumps(spec)}
    )
    assert response.status_code == 202, response.text
    job = wait_for(client, response.json()["id"], timeout=300)
    assert job["state"] == "succeeded", job
    return job


def _download(client: TestClient, job: dict, name: str, folder: Path) -> Path:
    response = client.get(f"/jobs/{job['id']}/artifacts/{name}")
    assert response.status_code == 200, name
    (folder / name).write_bytes(response.content)
    return folder / name


def test_bad_onnx_files_are_refused_at_post_jobs(stack: TestClient, uploaded, tmp_path: Path) -> None:
    path, _ = uploaded
    data = path.read_bytes()
    bad_op = onnx.load(str(path))
    bad_op.graph.node[-1].op_type = "DFT"
    cases = {
        "truncated.onnx": (data[: len(data) // 2], 415, "truncated"),
        "fft.onnx": (bad_op.SerializeToString(), 422, "op type DFT"),
    }
    before = stack.get("/jobs").json()["total"]
    for name, (content, status, words) in cases.items():
        response = stack.post(
            "/jobs", files={"model": (name, content)}, data={"spec": json.dumps({"model": ONNX_MODEL})}
        )
        assert response.status_code == status, response.text
        problem = response.json()
        assert response.headers["content-type"].startswith("application/problem+json")
        assert words in problem["detail"] and problem["errors"][0]["field"] == "model", problem
    assert stack.get("/jobs").json()["total"] == before  # nothing queued


def test_a_data_free_job_gives_a_model_pth_for_the_users_own_class(stack, uploaded, tmp_path) -> None:
    path, _ = uploaded
    rules = [
        {
            "select": {"name": "*.weight"},
            "steps": [{"type": "prune", "sparsity": 0.3}, {"type": "quantize", "k": 16}],
        }
    ]
    job = _submit(stack, path, {"model": ONNX_MODEL, "data": {"builtin": "digits"}, "rules": rules})
    names = {a["name"] for a in job["artifacts"]}
    assert {"model.pth", "model.onnx", "architecture.json", "report.html"} <= names
    mine = TinyNet()
    mine.load_state_dict(
        torch.load(_download(stack, job, "model.pth", tmp_path), weights_only=True), strict=True
    )
    reported = job["metrics"]["evaluation"]["after"]["top1"]
    assert accuracy(mine, load_builtin("digits")) == pytest.approx(reported)
    architecture = json.loads(_download(stack, job, "architecture.json", tmp_path).read_text())
    assert architecture["model"]["source"] == "onnx"


def test_retrain_structured_and_int8_give_a_smaller_onnx_with_the_reported_accuracy(
    stack, uploaded, tmp_path
):
    path, _ = uploaded
    spec = {
        "model": ONNX_MODEL,
        "data": {"builtin": "digits"},
        "rules": [
            {"select": {"name": "*", "kind": "conv"}, "steps": [{"type": "structured", "sparsity": 0.5}]}
        ],
        "retrain": {"finetune": {"epochs": 2, "lr": 0.002}},
        "int8": {"calibration_samples": 64},
    }
    job = _submit(stack, path, spec)
    names = {a["name"] for a in job["artifacts"]}
    assert {"model.onnx", "model.int8.onnx", "architecture.json", "architecture.onnx", "report.html"} <= names
    graph = onnx.load(str(_download(stack, job, "model.onnx", tmp_path)))

    def count(model: onnx.ModelProto) -> int:
        return sum(
            int(np.prod(t.dims)) for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT
        )

    assert count(graph) < 0.7 * count(onnx.load(str(path)))
    digits = load_builtin("digits")
    x, y = digits.test.tensors
    session = ort_session(tmp_path / "model.onnx", 1)
    logits = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    reported = job["metrics"]["evaluation"]["after"]
    assert float((logits.argmax(1) == y.numpy()).mean()) == pytest.approx(reported["top1"], abs=1.5 / len(y))
    assert reported["top1"] > 0.8
    # load_model rebuilds it from the job's files alone (architecture.onnx + the pruning history + model.pth)
    from compression_core import load_model

    for name in ("architecture.json", "architecture.onnx", "model.pth"):
        _download(stack, job, name, tmp_path)
    deployed = load_model(tmp_path)  # outside no_grad: Torch-Pruning traces with autograd
    with torch.no_grad():
        again = deployed(x).numpy()
    assert np.abs(again - logits).max() <= 1e-4 * np.abs(logits).max()


def test_a_budget_search_runs_its_trials_on_the_onnx_upload(stack, uploaded) -> None:
    path, _ = uploaded
    rules = [{"select": {"name": "*.weight"}, "steps": [{"type": "prune", "sparsity": 0.5}]}]
    search = {
        "mode": "budget",
        "parameters": {"rules.0.steps.0.sparsity": [0.3, 0.9]},
        "max_error_increase": 1.0,  # percentage points of test error
    }
    job = _submit(
        stack, path, {"model": ONNX_MODEL, "data": {"builtin": "digits"}, "rules": rules, "search": search}
    )
    trials = job["metrics"]["search"]["trials"]
    assert [t["state"] for t in trials] == ["succeeded"] * len(trials) and trials
    assert all(t["ratio"] > 1 for t in trials)
