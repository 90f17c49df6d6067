"""End to end: the in-process API, a real Celery worker process over the real Redis, SQLite or PostgreSQL,
and the real compression library. Nothing is eager or mocked."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import make_settings, reset_database
from fastapi.testclient import TestClient
from svc_helpers import SLOW_SPEC, SPEC, WorkerProcess, wait_for, write_model, write_slow_model

from compression_core.format import decode_records, decode_state_dict
from compression_core.io import load_state_dict
from compression_core.job.pipeline import compress_file
from compression_core.spec import Spec
from mcs_common.settings import Settings
from service.app import create_app
from service.dispatch import Dispatcher


@dataclass
class Stack:
    settings: Settings
    client: TestClient
    worker: WorkerProcess
    tmp: Path


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, redis_url: str, session_tag: str
) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp(f"e2e-{request.param}")
    if request.param == "sqlite":
        database_url = f"sqlite:///{tmp / 'mcs.db'}"
    else:
        database_url = request.getfixturevalue("postgres_url")
        reset_database(database_url)
    settings = make_settings(tmp / "data", database_url, redis_url, f"e2e-{request.param}-{session_tag}")
    with TestClient(create_app(settings)) as client:
        worker = WorkerProcess(settings, tmp / "worker.log")
        try:
            worker.wait_ready()
            yield Stack(settings, client, worker, tmp)
        finally:
            worker.stop()


def submit(stack: Stack, model: Path, spec: object) -> str:
    response = stack.client.post(
        "/jobs", files={"model": (model.name, model.read_bytes())}, data={"spec": json.dumps(spec)}
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def test_submit_poll_download_decode_equals_the_library(stack: Stack) -> None:
    model = write_model(stack.tmp / "in", "model.safetensors")
    job = wait_for(stack.client, submit(stack, model, SPEC))
    assert job["state"] == "succeeded", job
    assert job["attempts"] == 1 and job["progress"]["fraction"] == 1.0 and job["error"] is None
    assert job["started_at"] <= job["finished_at"] and job["created_at"] <= job["started_at"]
    assert job["metrics"]["totals"]["params"] == sum(t.numel() for t in load_state_dict(model).values())
    listed = stack.client.get(f"/jobs/{job['id']}/artifacts").json()["items"]
    assert (
        [a["name"] for a in listed]
        == ["model.pth", "model.bin", "metrics.json", "report.html"]
        == [a["name"] for a in job["artifacts"]]
    )
    out = stack.tmp / f"download-{job['id']}"
    out.mkdir()
    for artifact in listed:
        response = stack.client.get(artifact["url"])
        assert response.status_code == 200
        assert response.headers["etag"] == f'"{artifact["sha256"]}"'
        assert int(response.headers["content-length"]) == artifact["size"] == len(response.content)
        assert hashlib.sha256(response.content).hexdigest() == artifact["sha256"]
        disposition = "inline" if artifact["name"] == "report.html" else "attachment"  # opens in a browser
        assert response.headers["content-disposition"] == f'{disposition}; filename="{artifact["name"]}"'
        (out / artifact["name"]).write_bytes(response.content)

    reference = stack.tmp / f"reference-{job['id']}"
    compress_file(model, Spec.model_validate(SPEC), reference)
    decoded = decode_state_dict(out / "model.bin")
    dense = load_state_dict(out / "model.pth")
    expected = load_state_dict(reference / "model.pth")
    assert decoded.keys() == dense.keys() == expected.keys()
    for name in expected:
        assert decoded[name].equal(dense[name]) and dense[name].equal(expected[name]), name
    # the same input and spec give the same model.bin and model.pth (tests/reliability covers every file)
    assert (out / "model.bin").read_bytes() == (reference / "model.bin").read_bytes()
    assert (out / "model.pth").read_bytes() == (reference / "model.pth").read_bytes()
    ours, _ = decode_records((out / "model.bin").read_bytes())
    theirs, _ = decode_records((reference / "model.bin").read_bytes())
    for a, b in zip(ours, theirs, strict=True):
        assert a.method == b.method and a.shape == b.shape
        for field in ("positions", "codebook", "indices", "values"):
            x, y = getattr(a, field), getattr(b, field)
            assert (x is None and y is None) or x.equal(y), (a.name, field)
    assert json.loads((out / "metrics.json").read_text())["totals"] == job["metrics"]["totals"]
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<h2>Per-layer</h2>" in page and all(f'<td class="name">{n}</td>' in page for n in expected)


def test_etag_if_none_match_gives_304(stack: Stack) -> None:
    job = wait_for(stack.client, submit(stack, write_model(stack.tmp / "etag"), SPEC))
    url = f"/jobs/{job['id']}/artifacts/model.bin"
    etag = stack.client.get(url).headers["etag"]
    not_modified = stack.client.get(url, headers={"If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert not_modified.headers["etag"] == etag
    assert stack.client.get(url, headers={"If-None-Match": f'"other", W/{etag}'}).status_code == 304
    assert stack.client.get(url, headers={"If-None-Match": '"0000"'}).status_code == 200


def test_head_on_an_artifact_gives_its_headers_without_the_body(stack: Stack) -> None:
    job = wait_for(stack.client, submit(stack, write_model(stack.tmp / "head"), SPEC))
    url = f"/jobs/{job['id']}/artifacts/model.bin"
    got = stack.client.get(url)
    head = stack.client.head(url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["etag"] == got.headers["etag"]
    assert int(head.headers["content-length"]) == len(got.content)
    assert head.headers["content-type"] == got.headers["content-type"]
    assert stack.client.head(f"/jobs/{job['id']}/artifacts/model.onnx").status_code == 404


def test_cancel_a_running_job_stops_it_promptly(stack: Stack) -> None:
    job_id = submit(stack, write_slow_model(stack.tmp), SLOW_SPEC)
    running = wait_for(stack.client, job_id, ("running", "succeeded", "failed"))
    assert running["state"] == "running", running
    deadline = time.monotonic() + 120
    while (now := stack.client.get(f"/jobs/{job_id}").json())["progress"]["fraction"] < 0.06:
        assert now["state"] == "running" and time.monotonic() < deadline, now  # a job that ended early
        time.sleep(0.05)
    assert stack.client.delete(f"/jobs/{job_id}").status_code == 409  # running (asked before the cancel:
    # once cancelled, the worker may stop before a second request arrives, and the delete then succeeds)
    asked = stack.client.post(f"/jobs/{job_id}/cancel")
    assert asked.status_code == 202 and asked.json()["cancel_requested"]
    at_ask = stack.client.get(f"/jobs/{job_id}").json()["progress"]["fraction"]
    job = wait_for(stack.client, job_id, timeout=120)  # how fast: benchmarks/bench_service.py measures it
    assert job["state"] == "cancelled", job
    # it stopped at one of the next tensors, far from the end (each of the 200 is ~0.4% of the job)
    assert job["progress"]["fraction"] < min(0.8, at_ask + 0.3) and job["artifacts"] == []
    assert not list((stack.settings.jobs_dir / job_id).glob("work-*"))  # temp dir cleaned


def test_a_cancelled_queued_job_never_runs(stack: Stack) -> None:
    blocker = submit(stack, write_slow_model(stack.tmp), SLOW_SPEC)
    queued = submit(stack, write_model(stack.tmp / "q"), SPEC)
    assert stack.client.post(f"/jobs/{queued}/cancel").json()["state"] == "cancelled"
    stack.client.post(f"/jobs/{blocker}/cancel")
    wait_for(stack.client, blocker)
    # a later job runs, so the worker has passed the cancelled one in the queue
    after = wait_for(stack.client, submit(stack, write_model(stack.tmp / "a"), SPEC))
    assert after["state"] == "succeeded"
    job = stack.client.get(f"/jobs/{queued}").json()
    assert job["state"] == "cancelled" and job["attempts"] == 0 and job["started_at"] is None


def test_a_spec_that_fails_at_run_time_ends_failed_with_its_reason(stack: Stack) -> None:
    spec = {"rules": [{"select": {"name": "fc2.weight"}, "steps": [{"type": "prune", "keep": 100000}]}]}
    job = wait_for(stack.client, submit(stack, write_model(stack.tmp / "f"), spec))
    assert job["state"] == "failed"
    assert "keep" in job["error"] and "Traceback" not in job["error"]
    assert job["artifacts"] == [] and job["metrics"] is None
    assert stack.client.get(f"/jobs/{job['id']}/artifacts/model.bin").status_code == 404


def test_a_duplicate_delivery_is_skipped(stack: Stack) -> None:
    job = wait_for(stack.client, submit(stack, write_model(stack.tmp / "d"), SPEC))
    assert job["state"] == "succeeded"
    Dispatcher(stack.settings).send(job["id"], "cpu")  # the same job id delivered again
    marker = f"Task mcs.run_job[{job['id']}] succeeded"
    deadline = time.monotonic() + 60  # a bound for a loaded 2-core machine, not a speed
    while stack.worker.log_path.read_text().count(marker) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "'skipped'" in stack.worker.log_path.read_text().split(marker)[2].splitlines()[0]
    again = stack.client.get(f"/jobs/{job['id']}").json()
    assert again["attempts"] == 1 and again["finished_at"] == job["finished_at"]


def test_delete_a_finished_job_removes_record_and_files(stack: Stack) -> None:
    job = wait_for(stack.client, submit(stack, write_model(stack.tmp / "del"), SPEC))
    folder = stack.settings.jobs_dir / job["id"]
    sha = next(a["sha256"] for a in job["artifacts"] if a["name"] == "model.bin")
    assert (folder / "artifacts" / sha / "model.bin").is_file()
    assert stack.client.delete(f"/jobs/{job['id']}").status_code == 204
    assert not folder.exists()
    assert stack.client.get(f"/jobs/{job['id']}").status_code == 404
    assert stack.client.get(f"/jobs/{job['id']}/artifacts/model.bin").status_code == 404
