"""Search jobs through the service (issue 11): a real API, a real Celery worker over Redis (one process,
so a search that waited for its trials would deadlock), SQLite as the record of truth."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from svc_helpers import wait_for, worker_stack

from compression_core.data import load_builtin
from compression_core.evaluate import evaluate
from compression_core.methods.search.pareto import dominates
from compression_core.methods.search.validation import split_validation
from compression_core.models import build_model, load_into
from compression_core.train import save_state_dict, train_reference
from compression_core.training.finetune import RetrainConfig

MLP = {"arch": "mlp", "kwargs": {"sizes": [64, 32, 10]}}
RULE = {
    "select": {"name": "*.weight"},
    "steps": [{"type": "prune", "sparsity": 0.5}, {"type": "quantize", "k": 8}],
}
BASE = {
    "model": MLP,
    "data": {"builtin": "digits"},
    "rules": [RULE],
    "retrain": {"prune": {"epochs": 1, "lr": 0.02, "batch_size": 32}},
}
SPARSITY = "rules.0.steps.0.sparsity"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str, session_tag: str) -> Iterator[TestClient]:
    with worker_stack(tmp_path_factory.mktemp("search"), redis_url, f"search-{session_tag}") as started:
        yield started.client


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    reference = train_reference(MLP, load_builtin("digits"), RetrainConfig(epochs=6, lr=0.05, batch_size=32))
    return save_state_dict(reference.model, tmp_path_factory.mktemp("ref") / "mlp.safetensors")


def submit(client: TestClient, model: Path, spec: dict[str, Any]) -> str:
    response = client.post(
        "/jobs", files={"model": (model.name, model.read_bytes())}, data={"spec": json.dumps(spec)}
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def rows_of(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job["metrics"]["search"]["trials"])


def test_grid_of_three_points_returns_three_trials_and_a_true_front(
    stack: TestClient, model_file: Path
) -> None:
    spec = {**BASE, "search": {"mode": "grid", "parameters": {SPARSITY: [0.5, 0.8, 0.97]}}}
    job = wait_for(stack, submit(stack, model_file, spec), timeout=240)
    assert job["state"] == "succeeded", job
    rows = rows_of(job)
    assert [r["parameters"][SPARSITY] for r in rows] == [0.5, 0.8, 0.97]
    assert all(r["state"] == "succeeded" for r in rows)
    front = job["metrics"]["search"]["pareto"]
    points = {r["index"]: (r["ratio"], r["error_after"]) for r in rows}
    assert front
    for i in points:  # on the front exactly when no other trial dominates it
        dominated = any(dominates(points[j], points[i]) for j in points if j != i)
        assert (i in front) == (not dominated), (i, points, front)
    # the children are ordinary jobs of their own, listed in the parent
    children = job["children"]
    assert [c["index"] for c in children] == [0, 1, 2]
    assert {c["id"] for c in children} == {r["job_id"] for r in rows}
    for child in children:
        own = stack.get(child["url"]).json()
        assert own["parent_id"] == job["id"] and own["state"] == "succeeded"
        assert own["spec"]["rules"][0]["steps"][0]["sparsity"] == child["parameters"][SPARSITY]
        assert "search" not in own["spec"] or own["spec"]["search"] is None
    listed = stack.get("/jobs").json()["items"]
    assert job["id"] in {j["id"] for j in listed} and not {c["id"] for c in children} & {
        j["id"] for j in listed
    }
    # the parent's files: the chosen trial's model and metrics, the table and the plot
    names = {a["name"] for a in job["artifacts"]}
    assert {"model.bin", "model.pth", "metrics.json", "search.csv", "pareto.png", "report.html"} <= names
    table = list(csv.DictReader(io.StringIO(stack.get(f"/jobs/{job['id']}/artifacts/search.csv").text)))
    assert [float(r[SPARSITY]) for r in table] == [0.5, 0.8, 0.97]
    assert stack.get(f"/jobs/{job['id']}/artifacts/pareto.png").content[:8] == b"\x89PNG\r\n\x1a\n"
    best = job["metrics"]["search"]["best"]
    best_bin = stack.get(f"/jobs/{rows[best]['job_id']}/artifacts/model.bin").content
    assert stack.get(f"/jobs/{job['id']}/artifacts/model.bin").content == best_bin
    assert "Search" in stack.get(f"/jobs/{job['id']}/artifacts/report.html").text


def test_budget_search_returns_the_most_compressed_model_within_budget(
    stack: TestClient, model_file: Path, tmp_path: Path
) -> None:
    budget = 2.0  # points of validation error
    search = {
        "mode": "budget",
        "parameters": {SPARSITY: {"low": 0.3, "high": 0.99}},
        "max_error_increase": budget,
        "max_trials": 5,
    }
    job = wait_for(stack, submit(stack, model_file, {**BASE, "search": search}), timeout=300)
    assert job["state"] == "succeeded", job
    section = job["metrics"]["search"]
    rows = [r for r in section["trials"] if r["state"] == "succeeded"]
    assert 2 <= len(section["trials"]) <= 5
    feasible = [
        r for r in rows if r["validation_error_after"] - r["validation_error_before"] <= budget / 100 + 1e-12
    ]
    assert feasible and len(feasible) < len(rows), "the range should straddle the budget"
    assert section["budget"]["met"] is True
    chosen = section["trials"][section["best"]]
    assert all(chosen["ratio"] >= r["ratio"] for r in feasible)
    # measured here, on the downloaded artifact: within budget on the validation split it was chosen on
    (tmp_path / "model.pth").write_bytes(stack.get(f"/jobs/{job['id']}/artifacts/model.pth").content)
    from compression_core.io import load_state_dict

    digits = load_builtin("digits")
    validation = split_validation(digits, 0.2, 0).validation
    before = evaluate(
        load_into(build_model(MLP), load_state_dict(model_file)), validation, timing=False
    ).error
    after_model = load_into(build_model(MLP), load_state_dict(tmp_path / "model.pth"))
    after = evaluate(after_model, validation, timing=False).error
    assert after <= before + budget / 100 + 1e-9
    assert after == pytest.approx(chosen["validation_error_after"])
    # and the reported error is the test split's
    assert evaluate(after_model, digits.test, timing=False).error == pytest.approx(chosen["error_after"])
    assert job["metrics"]["evaluation"]["after"]["samples"] == len(digits.test)


def test_a_budget_nothing_meets_still_succeeds_and_says_so(stack: TestClient, model_file: Path) -> None:
    search = {
        "mode": "budget",
        "parameters": {SPARSITY: {"low": 0.97, "high": 0.99}},
        "max_error_increase": 0.0,
        "max_trials": 2,
    }
    job = wait_for(stack, submit(stack, model_file, {**BASE, "search": search}), timeout=240)
    assert job["state"] == "succeeded", job
    assert job["metrics"]["search"]["budget"]["met"] is False
    assert "NO trial met the budget" in job["progress"]["message"]


def test_cancelling_a_search_leaves_no_trial_queued_or_running(stack: TestClient, model_file: Path) -> None:
    slow = {**BASE, "retrain": {"prune": {"epochs": 40, "lr": 0.02, "batch_size": 8}}}
    spec = {**slow, "search": {"mode": "grid", "parameters": {SPARSITY: [0.5, 0.6, 0.7, 0.8]}}}
    job_id = submit(stack, model_file, spec)
    deadline = time.monotonic() + 60
    while not any(c["state"] == "running" for c in stack.get(f"/jobs/{job_id}").json()["children"] or []):
        assert time.monotonic() < deadline, stack.get(f"/jobs/{job_id}").json()
        time.sleep(0.05)
    response = stack.post(f"/jobs/{job_id}/cancel")
    assert response.status_code == 202, response.text
    job = wait_for(stack, job_id, timeout=60)
    assert job["state"] == "cancelled"
    deadline = time.monotonic() + 60
    while True:
        states = [c["state"] for c in stack.get(f"/jobs/{job_id}").json()["children"]]
        if not {"queued", "running"} & set(states):
            break
        assert time.monotonic() < deadline, states
        time.sleep(0.1)
    assert len(states) == 4 and set(states) == {"cancelled"}
    time.sleep(1.0)  # nothing starts afterwards either
    assert [c["state"] for c in stack.get(f"/jobs/{job_id}").json()["children"]] == states
