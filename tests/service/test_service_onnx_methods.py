"""Issue 19 through the service, the methods test_service_onnx.py leaves out: LC and distillation (an ONNX
teacher and an ONNX student) on a model class that exists only in the test (tests/sources/onnx/tiny.py),
the deployment table and report.html of such a job, and the preflight at POST /jobs for an ONNX upload
(data that does not fit the graph's input, a search whose trials would build an unknown teacher), each a
422 naming its field before anything is queued, and the same from POST /jobs/validate. Real API, real
Celery worker over Redis."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import save
from svc_helpers import wait_for
from test_service_onnx import ONNX_MODEL, _download, _submit, stack, uploaded  # noqa: F401 - fixtures

from compression_core.data import load_builtin
from compression_core.deploy.onnx_export import ort_session
from tests.sources.onnx.tiny import TinyNet, accuracy, export

LC = {"mu0": 2e-3, "mu_growth": 2.0, "steps": 2, "eval_every": 2, "l_step": {"epochs": 1, "lr": 0.02}}
LC_RULES = [
    {"select": {"name": "block.0.weight"}, "steps": [{"type": "prune", "sparsity": 0.7}]},
    {"select": {"name": "head.weight"}, "steps": [{"type": "lowrank", "alpha": 1e-5}]},
]


def _onnx_top1(path: Path) -> float:
    x, y = load_builtin("digits").test.tensors
    session = ort_session(path, 1)
    logits = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    return float((logits.argmax(1) == y.numpy()).mean())


def test_lc_on_an_onnx_upload_gives_the_users_class_its_weights_and_a_deployment_table(
    stack: TestClient,  # noqa: F811 - the fixture imported above
    uploaded: tuple[Path, float],  # noqa: F811
    tmp_path: Path,
) -> None:
    path, _ = uploaded
    spec = {"model": ONNX_MODEL, "data": {"builtin": "digits"}, "rules": LC_RULES, "lc": LC}
    job = _submit(stack, path, spec)
    assert [h["step"] for h in job["metrics"]["lc"]["history"]] == [0, 1, 2]
    after = job["metrics"]["evaluation"]["after"]
    assert (after["split"], after["n"]) == ("test", 360)
    one = 1.5 / after["n"]  # one sample's argmax may flip between runtimes
    # model.pth: the user's own class, strictly, with the constraint LC reached and the reported accuracy
    mine = TinyNet()
    weights = torch.load(_download(stack, job, "model.pth", tmp_path), weights_only=True)
    mine.load_state_dict(weights, strict=True)
    assert float((weights["block.0.weight"] == 0).float().mean()) >= 0.69
    assert accuracy(mine, load_builtin("digits")) == pytest.approx(after["top1"], abs=one)
    # model.onnx: the uploaded graph with those weights, the same accuracy in onnxruntime
    assert _onnx_top1(_download(stack, job, "model.onnx", tmp_path)) == pytest.approx(after["top1"], abs=one)
    # the deployment table: the upload and the job's artifacts, each measured on the test split
    rows = job["metrics"]["deployment"]["table"]["rows"]
    assert [r["name"] for r in rows] == ["original", "original (ONNX)", "model.pth", "model.onnx"]
    assert all(r["errors"]["samples"] == 360 and r["latency"]["batch1"]["p50_ms"] > 0 for r in rows)
    assert rows[3]["errors"]["top1_error"] == pytest.approx(1 - after["top1"], abs=one)
    page = _download(stack, job, "report.html", tmp_path).read_text()
    assert "<h2>Deployment</h2>" in page and "model.onnx" in page and "errors on 360 test samples" in page


def test_distill_trains_an_onnx_student_from_an_onnx_teacher(
    stack: TestClient,  # noqa: F811
    uploaded: tuple[Path, float],  # noqa: F811
    tmp_path: Path,
) -> None:
    teacher, teacher_top1 = uploaded
    torch.manual_seed(1)
    digits = load_builtin("digits")
    student = export(TinyNet().eval(), digits.train.tensors[0][:1], tmp_path / "student.onnx")  # untrained
    spec = {
        "model": ONNX_MODEL,
        "data": {"builtin": "digits"},
        "distill": {"teacher": ONNX_MODEL, "epochs": 2, "lr": 0.005, "batch_size": 64},
        "rules": [{"select": {"name": "*.weight", "kind": "conv"}, "steps": [{"type": "quantize", "k": 16}]}],
    }
    response = stack.post(
        "/jobs",
        files={
            "model": (student.name, student.read_bytes()),
            "teacher": (teacher.name, teacher.read_bytes()),
        },
        data={"spec": json.dumps(spec)},
    )
    assert response.status_code == 202, response.text
    job = wait_for(stack, response.json()["id"], timeout=300)
    assert job["state"] == "succeeded", job
    evaluation, distilled = job["metrics"]["evaluation"], job["metrics"]["distill"]
    # the untrained upload, then the student the teacher taught (evaluation.before: before the rules)
    assert distilled["student_error_before"] > 0.7 and evaluation["after"]["top1"] > 0.85, evaluation
    assert distilled["teacher"]["error"] == pytest.approx(1 - teacher_top1, abs=1.5 / 360)
    assert len(distilled["history"]) == 2
    mine = TinyNet()
    weights = torch.load(_download(stack, job, "model.pth", tmp_path), weights_only=True)
    mine.load_state_dict(weights, strict=True)
    assert len(torch.unique(weights["block.0.weight"])) <= 16
    one = 1.5 / evaluation["after"]["n"]
    assert accuracy(mine, digits) == pytest.approx(evaluation["after"]["top1"], abs=one)
    onnx_top1 = _onnx_top1(_download(stack, job, "model.onnx", tmp_path))
    assert onnx_top1 == pytest.approx(evaluation["after"]["top1"], abs=one)


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_post_jobs_refuses_data_and_searches_that_cannot_run_on_the_onnx_upload(
    stack: TestClient,  # noqa: F811
    uploaded: tuple[Path, float],  # noqa: F811
) -> None:
    path, _ = uploaded
    graph = (path.name, path.read_bytes())
    retrain = {"finetune": {"epochs": 1}}
    labels = np.zeros(8, np.int64)
    teacher = {"arch": "GarmentNet"}  # an architecture the server lacks
    search = {"mode": "budget", "parameters": {"distill.temperature": [2.0, 4.0]}, "max_error_increase": 0.02}
    cases = [
        (  # NHWC images for a graph that takes 64 features
            {"data": ("d.npz", _npz(x_train=np.zeros((8, 8, 8, 1), np.float32), y_train=labels))},
            {"data": {"upload": True}, "retrain": retrain},
            "data",
            "samples of shape [8, 8, 1] (x_train without the batch) do not fit the uploaded graph's "
            "input [64] (its declared shape without the batch); reshape the arrays",
        ),
        (
            {},
            {"data": {"builtin": "mnist-5k"}, "retrain": retrain},
            "data",
            "data set mnist-5k: samples of shape [784]",
        ),
        (  # a readable state dict teacher, so that only its architecture is wrong
            {"teacher": ("t.safetensors", save({"w": torch.zeros(2)}))},
            {"data": {"builtin": "digits"}, "distill": {"teacher": teacher, "epochs": 1}, "search": search},
            "spec.distill.teacher.arch",
            "unknown architecture 'GarmentNet' (every trial of the search builds it)",
        ),
    ]
    before = stack.get("/jobs").json()["total"]
    for (files, spec, field, words), endpoint in itertools.product(cases, ("/jobs", "/jobs/validate")):
        body = {"spec": json.dumps({"model": ONNX_MODEL, **spec})}
        response = stack.post(endpoint, files={"model": graph, **files}, data=body)
        assert response.status_code == 422, (endpoint, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert [e["field"] for e in problem["errors"]] == [field], problem
        assert words in problem["errors"][0]["message"], problem
    assert stack.get("/jobs").json()["total"] == before  # nothing queued
