"""POST /jobs with an N:M prune pattern: bad patterns are a 422 problem naming `...prune.pattern` (or the
step, for a combination), nothing queued; a good one is accepted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from svc_helpers import write_model

PROBLEM = "application/problem+json"


def _submit(client: TestClient, model: Path, step: dict) -> object:
    spec = {"rules": [{"select": {"name": "*.weight"}, "steps": [{"type": "prune", **step}]}]}
    return client.post(
        "/jobs", files={"model": (model.name, model.read_bytes())}, data={"spec": json.dumps(spec)}
    )


@pytest.mark.parametrize(
    ("step", "field", "message"),
    [
        ({"pattern": "4:4"}, "spec.rules.0.steps.0.prune.pattern", "1 <= N < M"),
        ({"pattern": "two:four"}, "spec.rules.0.steps.0.prune.pattern", '"N:M"'),
        ({"pattern": "2:4", "sparsity": 0.5}, "spec.rules.0.steps.0.prune", "or a pattern alone"),
        ({"pattern": "2:4", "scope": "global"}, "spec.rules.0.steps.0.prune", 'scope "global"'),
    ],
)
def test_bad_patterns_are_422_naming_the_field(
    client: TestClient, tmp_path: Path, step: dict, field: str, message: str
) -> None:
    response = _submit(client, write_model(tmp_path), step)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    errors = response.json()["errors"]
    assert [e["field"] for e in errors] == [field] and message in errors[0]["message"], errors
    assert client.get("/jobs").json()["total"] == 0  # nothing queued


def test_a_two_of_four_pattern_is_accepted(client: TestClient, tmp_path: Path) -> None:
    response = _submit(client, write_model(tmp_path), {"pattern": "2:4"})
    assert response.status_code == 202, response.text
    assert response.json()["spec"]["rules"][0]["steps"][0]["pattern"] == "2:4"
