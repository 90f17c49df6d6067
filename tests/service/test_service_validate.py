"""POST /jobs/validate: the preflight over the upload multipart; a broken residual plan is a 422 naming the
layer, a runnable one answers the plan; nothing is queued either way."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient
from safetensors.torch import save_file

from compression_core.models import build_model

RESNET = {"arch": "resnet18", "kwargs": {"num_classes": 10}, "input_shape": [3, 32, 32]}


def _validate(client: TestClient, model: Path, spec: object) -> object:
    return client.post(
        "/jobs/validate", files={"model": (model.name, model.read_bytes())}, data={"spec": json.dumps(spec)}
    )


def test_validate_names_refused_layers_and_answers_the_plan(client: TestClient, tmp_path: Path) -> None:
    model = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in build_model(RESNET).state_dict().items()}, str(model))
    step = {"type": "structured", "sparsity": 0.5, "ignore": ["conv1"]}
    broken = {"model": RESNET, "rules": [{"select": {"name": "layer1.*", "kind": "conv"}, "steps": [step]}]}
    response = _validate(client, model, broken)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert "layer1.0.conv2" in problem["detail"]
    assert any(e["field"] == "spec.rules.0" and "'layer1.1.conv2'" in e["message"] for e in problem["errors"])

    fine = {
        "model": RESNET,
        "rules": [{"select": {"name": "layer1.*", "kind": "conv"}, "steps": [{**step, "ignore": []}]}],
    }
    response = _validate(client, model, fine)
    assert response.status_code == 200, response.text
    report = response.json()
    assert (
        report["ok"] is True and report["structured"]["params_after"] < report["structured"]["params_before"]
    )
    assert client.get("/jobs").json()["total"] == 0  # nothing was queued


def test_validate_refuses_what_post_jobs_refuses(client: TestClient, tmp_path: Path) -> None:
    model = tmp_path / "lenet5.safetensors"
    save_file(
        {k: v.contiguous() for k, v in build_model({"arch": "lenet5"}).state_dict().items()}, str(model)
    )
    assert _validate(client, model, {"rules": [], "int8": {}}).status_code == 422  # int8 without model/data
    response = _validate(client, model, {"model": {"arch": "resnet18"}})
    assert response.status_code == 422 and any(
        "missing tensor bn1.weight" in e["message"] for e in response.json()["errors"]
    )
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{oops")
    assert _validate(client, bad, {"model": {"arch": "lenet5"}}).status_code == 415


def test_validate_traces_an_onnx_graph_through_its_source(client: TestClient, tmp_path: Path) -> None:
    """An upload that carries its own graph (issue 19): the preflight child converts it as the worker would
    and answers the structured plan of the user's own layers; a broken plan is a 422 naming the layer."""
    import torch

    from tests.sources.onnx.tiny import TinyNet, export

    torch.manual_seed(0)
    model = export(TinyNet().eval(), torch.zeros(1, 1, 8, 8), tmp_path / "garment.onnx")
    step = {"type": "structured", "sparsity": 0.5}
    spec = {"model": {"arch": "onnx"}, "rules": [{"select": {"kind": "conv"}, "steps": [step]}]}
    response = _validate(client, model, spec)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["ok"] is True
    assert report["structured"]["params_after"] < report["structured"]["params_before"]
    assert report["model"]["input_shape"] == [1, 8, 8]
    assert client.get("/jobs").json()["total"] == 0
