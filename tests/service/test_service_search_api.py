"""A search's spec is checked before anything is queued: a bad path or a refused value is a 422 naming it
(API only, both databases, nothing consumes the queue)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from svc_helpers import write_model

BASE = {
    "model": {"arch": "mlp", "kwargs": {"sizes": [64, 32, 10]}},
    "data": {"builtin": "digits"},
    "rules": [{"select": {"name": "*.weight"}, "steps": [{"type": "prune", "sparsity": 0.5}]}],
}


@pytest.mark.parametrize(
    ("search", "field", "words"),
    [
        (
            {"mode": "grid", "parameters": {"rules.0.steps.0.sparsityy": [0.5]}},
            "spec.search.parameters.rules.0.steps.0.sparsityy",
            "not a field",
        ),
        (
            {"mode": "grid", "parameters": {"rules.4.steps.0.sparsity": [0.5]}},
            "spec.search.parameters.rules.4.steps.0.sparsity",
            "does not exist",
        ),
        (
            {"mode": "grid", "parameters": {"rules.0.steps.0.sparsity": [0.5, 1.5]}},
            "spec.search.parameters.rules.0.steps.0.sparsity",
            "less than 1",
        ),
        (
            {"mode": "grid", "parameters": {"rules.0.select.name": [1]}},
            "spec.search.parameters.rules.0.select.name",
            "not a numeric field",
        ),
        (
            {
                "mode": "budget",
                "parameters": {"retrain.prune.epochs": {"low": 1, "high": 3}},
                "max_error_increase": 1,
            },
            "spec.search.parameters.retrain.prune.epochs",
            "not set",
        ),
        ({"mode": "sensitivity", "values": [0.5, 2.0]}, "spec.search.values", "less than 1"),
    ],
)
def test_a_bad_search_is_a_422_naming_the_path_and_queues_nothing(
    client: TestClient, tmp_path: Path, search: dict, field: str, words: str
) -> None:
    model = write_model(tmp_path)
    response = client.post(
        "/jobs",
        files={"model": (model.name, model.read_bytes())},
        data={"spec": json.dumps({**BASE, "search": search})},
    )
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["errors"][0]["field"] == field
    assert words in problem["errors"][0]["message"]
    assert client.get("/jobs").json()["total"] == 0


def test_a_search_needs_model_and_data(client: TestClient, tmp_path: Path) -> None:
    model = write_model(tmp_path)
    spec = {
        "rules": BASE["rules"],
        "search": {"mode": "grid", "parameters": {"rules.0.steps.0.sparsity": [0.5]}},
    }
    response = client.post(
        "/jobs", files={"model": (model.name, model.read_bytes())}, data={"spec": json.dumps(spec)}
    )
    assert response.status_code == 422
    assert "needs `model` and `data`" in response.text
