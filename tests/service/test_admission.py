"""POST /jobs refuses, before anything is queued, what would only fail in the worker (issue 19): an unknown
architecture (also in a search, whose trials all build it), a state dict that does not fit it, data whose
array names or sample shape do not fit the model's input (NHWC images, `X_train`), an error budget on data
without labels. Each is a 422 problem naming the field and what to do; checked from headers only."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from safetensors.torch import save_file

from compression_core.models import build_model

LENET_RGB = {"arch": "lenet5", "kwargs": {"in_channels": 3}}
PRUNE = [{"select": {"name": "*.weight"}, "steps": [{"type": "prune", "sparsity": 0.5}]}]


def _model(tmp_path: Path, model: dict[str, Any]) -> Path:
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in build_model(model).state_dict().items()}, str(path))
    return path


def _npz(**arrays: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _images(n: int, *shape: int) -> np.ndarray:
    return np.random.default_rng(0).random((n, *shape), dtype=np.float32)


def _post(client: TestClient, model: Path, spec: dict[str, Any], data: bytes | None = None) -> Any:
    files = {"model": (model.name, model.read_bytes())}
    if data is not None:
        files["data"] = ("data.npz", data)
    return client.post("/jobs", files=files, data={"spec": json.dumps(spec)})


def _problem(response: Any, field: str) -> str:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    errors = [e for e in response.json()["errors"] if e["field"] == field]
    assert errors, response.json()
    return str(errors[0]["message"])


def test_an_unknown_architecture_is_refused_at_submission(client: TestClient, tmp_path: Path) -> None:
    model = _model(tmp_path, LENET_RGB)
    spec = {"model": {"arch": "GarmentNet"}, "rules": PRUNE}
    message = _problem(_post(client, model, spec), "spec.model.arch")
    assert "unknown architecture 'GarmentNet'" in message and "lenet5" in message and "resnet18" in message
    search = {
        **spec,
        "data": {"builtin": "digits"},
        "search": {"mode": "grid", "parameters": {"rules.0.steps.0.sparsity": [0.5, 0.9]}},
    }
    message = _problem(_post(client, model, search), "spec.model.arch")
    assert "every trial of the search builds it" in message
    teacher = {
        **spec,
        "model": LENET_RGB,
        "data": {"builtin": "digits"},
        "distill": {"teacher": {"arch": "Nope"}},
    }
    assert "unknown architecture 'Nope'" in _problem(
        _post(client, model, teacher), "spec.distill.teacher.arch"
    )
    assert client.get("/jobs").json()["total"] == 0  # nothing was queued


def test_a_state_dict_that_does_not_fit_the_architecture_is_refused(
    client: TestClient, tmp_path: Path
) -> None:
    model = _model(tmp_path, {"arch": "lenet5"})  # one input channel
    message = _problem(_post(client, model, {"model": LENET_RGB, "rules": PRUNE}), "model")
    assert "conv1.weight: the file has shape (20, 1, 5, 5), the architecture (20, 3, 5, 5)" in message


def test_channels_last_images_are_named_with_the_transpose(client: TestClient, tmp_path: Path) -> None:
    model = _model(tmp_path, LENET_RGB)
    spec = {"model": LENET_RGB, "data": {"upload": True}, "rules": PRUNE}
    nhwc = _npz(x_train=_images(8, 28, 28, 3), y_train=np.arange(8) % 10)
    message = _problem(_post(client, model, spec, nhwc), "data")
    assert "samples of shape [28, 28, 3]" in message and "[3, 28, 28]" in message
    assert "channels-last (NHWC" in message and "transpose(0, 3, 1, 2)" in message
    nchw = _npz(x_train=_images(8, 3, 28, 28), y_train=np.arange(8) % 10)
    assert _post(client, model, spec, nchw).status_code == 202


def test_array_names_and_feature_counts_that_do_not_fit_are_refused(
    client: TestClient, tmp_path: Path
) -> None:
    mlp = {"arch": "mlp", "kwargs": {"sizes": [64, 10]}}
    model = _model(tmp_path, mlp)
    spec = {"model": mlp, "data": {"upload": True}, "rules": PRUNE}
    upper = _npz(X_train=_images(8, 64), y_train=np.arange(8))
    assert "rename X_train -> x_train" in _problem(_post(client, model, spec, upper), "data")
    wide = _npz(x_train=_images(8, 784), y_train=np.arange(8))
    message = _problem(_post(client, model, spec, wide), "data")
    assert "samples of shape [784]" in message and "'mlp'" in message
    short = _npz(x_train=_images(8, 64), y_train=np.arange(5))
    assert "y_train has shape [5]; expected (8,)" in _problem(_post(client, model, spec, short), "data")
    assert "no `data` file" in _problem(_post(client, model, spec), "data")
    on_builtin = {"model": mlp, "data": {"builtin": "mnist-5k"}, "rules": PRUNE}
    assert "data set mnist-5k: samples of shape [784]" in _problem(_post(client, model, on_builtin), "data")


def test_data_without_labels_takes_a_fidelity_budget_not_an_error_budget(
    client: TestClient, tmp_path: Path
) -> None:
    mlp = {"arch": "mlp", "kwargs": {"sizes": [64, 10]}}
    model = _model(tmp_path, mlp)
    unlabelled = _npz(x_train=_images(40, 64), x_test=_images(10, 64))
    search = {"mode": "budget", "parameters": {"rules.0.steps.0.sparsity": {"low": 0.3, "high": 0.9}}}
    spec = {"model": mlp, "data": {"upload": True}, "rules": PRUNE}
    errors = {**spec, "search": {**search, "max_error_increase": 1.0}}
    message = _problem(_post(client, model, errors, unlabelled), "spec.search.max_error_increase")
    assert "no labels" in message and "min_top1_agreement" in message
    fidelity = {**spec, "search": {**search, "min_top1_agreement": 0.95}}
    assert _post(client, model, fidelity, unlabelled).status_code == 202
    regressor = {"arch": "mlp", "kwargs": {"sizes": [64, 1]}}
    retrain = {
        "model": regressor,
        "data": {"upload": True},
        "rules": PRUNE,
        "retrain": {"prune_schedule": [1.0], "prune": {"epochs": 1}},
    }
    message = _problem(_post(client, _model(tmp_path, regressor), retrain, unlabelled), "spec.retrain")
    assert "not class scores" in message and "upload y_* labels" in message


def test_the_fidelity_budget_is_validated_in_the_spec(client: TestClient, tmp_path: Path) -> None:
    mlp = {"arch": "mlp", "kwargs": {"sizes": [64, 10]}}
    search = {"mode": "budget", "parameters": {"rules.0.steps.0.sparsity": {"low": 0.3, "high": 0.9}}}
    spec = {
        "model": mlp,
        "data": {"builtin": "digits"},
        "rules": PRUNE,
        "search": {**search, "min_top1_agreement": 2},
    }
    response = _post(client, _model(tmp_path, mlp), spec)
    assert response.status_code == 422
    assert any(e["field"].endswith("min_top1_agreement") for e in response.json()["errors"]), response.text


def test_exported_programs_are_refused_even_where_trusted(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/spec.md: `.pt2` is never a job input; MCS_TRUST_EXPORTED_PROGRAMS only unlocks a library call."""
    monkeypatch.setenv("MCS_TRUST_EXPORTED_PROGRAMS", "1")
    response = client.post(
        "/jobs", files={"model": ("model.pt2", b"PK\x03\x04")}, data={"spec": json.dumps({})}
    )
    assert response.status_code == 415 and "'.pt2'" in response.text
