"""Stored sizes are bounded (issue 10, item 6): `spec_file` has the inline spec's cap, a spec's rules and
name patterns are bounded, and listings carry summaries, not every job's spec and metrics."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import update
from svc_helpers import SPEC, write_model

from mcs_common.models import Job
from service.jobs import MAX_PATTERNS


def test_a_spec_file_over_the_field_cap_is_413(client: TestClient, tmp_path: Path) -> None:
    model = write_model(tmp_path)
    rules = [
        {"select": {"name": [f"layer{i}.*" for i in range(300_000)]}, "steps": [{"type": "prune", "keep": 1}]}
    ]
    big = json.dumps({"version": 1, "rules": rules}).encode()
    assert len(big) > 4 * 1024**2  # the spec was 12 MB; any over 1 MiB must go
    response = client.post(
        "/jobs", files={"model": (model.name, model.read_bytes()), "spec_file": ("spec.json", big)}
    )
    assert response.status_code == 413, response.text
    assert "spec_file" in response.json()["detail"]
    assert client.get("/jobs").json()["total"] == 0


def test_too_many_name_patterns_are_refused_by_name(client: TestClient, tmp_path: Path) -> None:
    names = [f"l{i}" for i in range(MAX_PATTERNS + 1)]
    spec = {"version": 1, "rules": [{"select": {"name": names}, "steps": [{"type": "prune", "keep": 1}]}]}
    model = write_model(tmp_path)
    response = client.post(
        "/jobs", files={"model": (model.name, model.read_bytes())}, data={"spec": json.dumps(spec)}
    )
    assert response.status_code == 422, response.text
    assert f"{MAX_PATTERNS + 1} name patterns" in response.json()["detail"]


def test_listings_are_summaries_and_the_job_has_everything(client: TestClient, tmp_path: Path) -> None:
    model = write_model(tmp_path)
    ids = []
    for _ in range(3):
        response = client.post(
            "/jobs", files={"model": (model.name, model.read_bytes())}, data={"spec": json.dumps(SPEC)}
        )
        ids.append(response.json()["id"])
    metrics = {"layers": [{"name": f"layer{i}", "bits": 3.5, "notes": "x" * 200} for i in range(10_000)]}
    with client.app.state.sessions() as session:  # type: ignore[attr-defined]
        session.execute(update(Job).values(metrics=metrics))  # what a 10k-tensor job stores (~2.6 MB)
        session.commit()
    listing = client.get("/jobs", params={"limit": 200})
    assert listing.status_code == 200
    assert len(listing.content) < 10_000, len(listing.content)  # was 3 x the metrics
    items = listing.json()["items"]
    assert {item["id"] for item in items} == set(ids)
    assert all("spec" not in item and "metrics" not in item for item in items)
    assert all(item["method"] and item["links"]["self"] == f"/jobs/{item['id']}" for item in items)
    full = client.get(f"/jobs/{ids[0]}").json()
    assert full["spec"]["rules"][0]["name"] == "weights"
    assert len(full["metrics"]["layers"]) == 10_000
    assert uuid.UUID(full["id"])
