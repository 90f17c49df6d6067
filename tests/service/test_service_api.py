"""The HTTP API without a worker (jobs stay queued): validation, errors, listing, cancel, delete, OpenAPI.
Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import pickle
import uuid
from pathlib import Path

import redis
import torch
from fastapi.testclient import TestClient
from svc_helpers import SPEC, write_model

from mcs_common.settings import Settings
from service.app import create_app

PROBLEM = "application/problem+json"


def submit(client: TestClient, model: Path, spec: object = SPEC, **extra_files: Path) -> object:
    files = {"model": (model.name, model.read_bytes())}
    files.update({role: (path.name, path.read_bytes()) for role, path in extra_files.items()})
    return client.post("/jobs", files=files, data={"spec": json.dumps(spec)})


def test_submit_answers_202_with_location_and_a_queued_job(client: TestClient, tmp_path: Path) -> None:
    response = submit(client, write_model(tmp_path))
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/jobs/{job['id']}"
    assert job["state"] == "queued" and job["attempts"] == 0 and job["progress"]["fraction"] == 0
    assert job["spec"]["rules"][0]["name"] == "weights"
    assert job["links"]["artifacts"] == f"/jobs/{job['id']}/artifacts"
    assert client.get(response.headers["location"]).json()["id"] == job["id"]


def test_spec_as_a_file_and_a_pth_model_are_accepted(client: TestClient, tmp_path: Path) -> None:
    model = write_model(tmp_path, "weights.pth")
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(SPEC))
    files = {"model": (model.name, model.read_bytes()), "spec_file": ("spec.json", spec_file.read_bytes())}
    response = client.post("/jobs", files=files)
    assert response.status_code == 202, response.text


def test_bad_spec_is_422_naming_the_field(client: TestClient, tmp_path: Path) -> None:
    spec = {"rules": [{"steps": [{"type": "quantize", "k": 1}]}]}
    response = submit(client, write_model(tmp_path), spec)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == 422 and problem["title"] == "Invalid spec"
    assert [e["field"] for e in problem["errors"]] == ["spec.rules.0.steps.0.quantize.k"]
    assert "spec.rules.0.steps.0.quantize.k" in problem["detail"]


def test_spec_that_is_not_json_is_422(client: TestClient, tmp_path: Path) -> None:
    model = write_model(tmp_path)
    response = client.post("/jobs", files={"model": (model.name, model.read_bytes())}, data={"spec": "{nope"})
    assert response.status_code == 422 and response.json()["errors"][0]["field"].startswith("spec")


def test_missing_spec_or_model_is_422_naming_it(client: TestClient, tmp_path: Path) -> None:
    model = write_model(tmp_path)
    no_spec = client.post("/jobs", files={"model": (model.name, model.read_bytes())})
    assert no_spec.status_code == 422 and no_spec.json()["errors"][0]["field"] == "spec"
    no_model = client.post("/jobs", data={"spec": json.dumps(SPEC)}, files={"data": ("d.npz", b"x")})
    assert no_model.status_code == 422 and no_model.json()["errors"][0]["field"] == "model"


def test_unknown_part_and_bad_queue_are_422(client: TestClient, tmp_path: Path) -> None:
    model = write_model(tmp_path)
    files = {"model": (model.name, model.read_bytes()), "../../etc/passwd": ("x", b"x")}
    assert client.post("/jobs", files=files, data={"spec": json.dumps(SPEC)}).status_code == 422
    files = {"model": (model.name, model.read_bytes())}
    response = client.post("/jobs", files=files, data={"spec": json.dumps(SPEC), "queue": "tpu"})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "queue"


def test_a_text_file_is_refused_as_not_a_state_dict(client: TestClient, tmp_path: Path) -> None:
    fake = tmp_path / "model.safetensors"
    fake.write_bytes(b"hello, I am not a model")
    response = client.post(
        "/jobs", files={"model": (fake.name, fake.read_bytes())}, data={"spec": json.dumps(SPEC)}
    )
    assert response.status_code == 415 and response.headers["content-type"] == PROBLEM
    assert response.json()["errors"][0]["field"] == "model"


class _Evil:
    """Pickles to a call of os.system: a loader that runs pickle code would create the marker file."""

    marker = ""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_pickle_is_refused_and_its_code_never_runs(client: TestClient, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    _Evil.marker = str(marker)
    zipped = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(2), "x": _Evil()}, zipped)
    raw = tmp_path / "evil-raw.pth"
    raw.write_bytes(pickle.dumps({"w": _Evil()}))
    for path in (zipped, raw):
        files = {"model": (path.name, path.read_bytes())}
        response = client.post("/jobs", files=files, data={"spec": json.dumps(SPEC)})
        assert response.status_code == 415, response.text
        assert response.json()["title"] == "Unsupported model file"
    assert not marker.exists()
    assert client.get("/jobs").json()["total"] == 0
    assert list((Path(client.app.state.settings.staging_dir)).iterdir()) == []  # nothing left behind


def test_a_non_state_dict_teacher_is_refused(client: TestClient, tmp_path: Path) -> None:
    teacher = tmp_path / "teacher.pth"
    torch.save([1, 2, 3], teacher)
    response = submit(client, write_model(tmp_path), teacher=teacher)
    assert response.status_code == 415 and response.json()["errors"][0]["field"] == "teacher"


def test_extra_files_are_stored_with_the_job(client: TestClient, settings: Settings, tmp_path: Path) -> None:
    data = tmp_path / "digits.npz"
    data.write_bytes(b"not parsed by the service")
    teacher = write_model(tmp_path / "t", "teacher.safetensors", seed=3)
    response = submit(client, write_model(tmp_path), data=data, teacher=teacher)
    assert response.status_code == 202, response.text
    inputs = settings.jobs_dir / response.json()["id"] / "inputs"
    assert sorted(p.name for p in inputs.iterdir()) == [
        "data.npz",
        "model.safetensors",
        "teacher.safetensors",
    ]
    assert (inputs / "data.npz").read_bytes() == data.read_bytes()


def test_upload_over_the_limit_is_413(settings: Settings, tmp_path: Path) -> None:
    small = settings.model_copy(update={"max_upload_bytes": 2000})
    model = write_model(tmp_path)
    assert model.stat().st_size > 2000
    with TestClient(create_app(small)) as client:
        declared = client.post(
            "/jobs", files={"model": (model.name, model.read_bytes())}, data={"spec": "{}"}
        )
        assert declared.status_code == 413 and declared.headers["content-type"] == PROBLEM

        def chunks():  # no Content-Length: the cap must be counted while streaming
            boundary = b"b0undary"
            yield (
                b"--"
                + boundary
                + b'\r\nContent-Disposition: form-data; name="model"; filename="m.pth"\r\n\r\n'
            )
            for _ in range(10):
                yield b"\0" * 1000

        streamed = client.post(
            "/jobs", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b0undary"}
        )
        assert streamed.status_code == 413 and "2000" in streamed.json()["detail"]
        assert list(small.staging_dir.iterdir()) == []


def test_unknown_job_is_404_problem(client: TestClient) -> None:
    for method, path in [
        ("GET", f"/jobs/{uuid.uuid4()}"),
        ("POST", f"/jobs/{uuid.uuid4()}/cancel"),
        ("DELETE", f"/jobs/{uuid.uuid4()}"),
        ("GET", f"/jobs/{uuid.uuid4()}/artifacts"),
    ]:
        response = client.request(method, path)
        assert response.status_code == 404, (method, path)
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["title"] == "Job not found"
    bad_id = client.get("/jobs/not-a-uuid")
    assert bad_id.status_code == 422 and bad_id.json()["errors"][0]["field"] == "path.job_id"


def test_artifacts_of_a_queued_job_and_unknown_names(client: TestClient, tmp_path: Path) -> None:
    job = submit(client, write_model(tmp_path)).json()
    assert client.get(f"/jobs/{job['id']}/artifacts").json() == {"items": []}
    assert client.get(f"/jobs/{job['id']}/artifacts/model.bin").status_code == 404
    for name in ("mcs.db", "..%2F..%2Fmcs.db", "inputs"):
        assert client.get(f"/jobs/{job['id']}/artifacts/{name}").status_code in (404, 422)


def test_list_is_newest_first_paginated_and_filtered(client: TestClient, tmp_path: Path) -> None:
    model = write_model(tmp_path)
    ids = [submit(client, model).json()["id"] for _ in range(5)]
    page = client.get("/jobs", params={"limit": 2}).json()
    assert [j["id"] for j in page["items"]] == ids[::-1][:2]
    assert page["total"] == 5 and page["next"] == "/jobs?limit=2&offset=2"
    second = client.get(page["next"]).json()
    assert [j["id"] for j in second["items"]] == ids[::-1][2:4]
    last = client.get("/jobs", params={"limit": 2, "offset": 4}).json()
    assert [j["id"] for j in last["items"]] == [ids[0]] and last["next"] is None
    assert client.post(f"/jobs/{ids[1]}/cancel").json()["state"] == "cancelled"
    cancelled = client.get("/jobs", params={"state": "cancelled"}).json()
    assert [j["id"] for j in cancelled["items"]] == [ids[1]] and cancelled["total"] == 1
    assert client.get("/jobs", params={"state": "queued"}).json()["total"] == 4
    assert client.get("/jobs", params={"state": "exploded"}).status_code == 422
    assert client.get("/jobs", params={"limit": 0}).status_code == 422


def test_cancel_a_queued_job_then_delete_it(client: TestClient, settings: Settings, tmp_path: Path) -> None:
    job = submit(client, write_model(tmp_path)).json()
    conflict = client.delete(f"/jobs/{job['id']}")
    assert conflict.status_code == 409 and conflict.headers["content-type"] == PROBLEM
    cancelled = client.post(f"/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 202
    body = cancelled.json()
    assert body["state"] == "cancelled" and body["cancel_requested"] and body["finished_at"]
    assert client.post(f"/jobs/{job['id']}/cancel").json()["state"] == "cancelled"  # idempotent
    assert (settings.jobs_dir / job["id"]).is_dir()
    assert client.delete(f"/jobs/{job['id']}").status_code == 204
    assert client.get(f"/jobs/{job['id']}").status_code == 404
    assert not (settings.jobs_dir / job["id"]).exists()


def test_health_ready_and_spec_schema(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "broker": "ok"}
    schema = client.get("/spec/schema").json()
    assert "rules" in schema["properties"]


def test_readyz_is_503_when_the_broker_is_down(settings: Settings) -> None:
    down = settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(down)) as client:
        response = client.get("/readyz")
    assert response.status_code == 503 and response.headers["content-type"] == PROBLEM
    assert [e["field"] for e in response.json()["errors"]] == ["broker"]


def test_submit_is_503_and_leaves_nothing_when_the_broker_is_down(settings: Settings, tmp_path: Path) -> None:
    down = settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(down)) as client:
        response = submit(client, write_model(tmp_path))
        assert response.status_code == 503, response.text
        assert client.get("/jobs").json()["total"] == 0
    assert list(down.jobs_dir.iterdir()) == []


def test_openapi_documents_every_route_and_problem_responses(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    expected = {
        ("/jobs", "post"), ("/jobs", "get"), ("/jobs/{job_id}", "get"), ("/jobs/{job_id}", "delete"),
        ("/jobs/{job_id}/cancel", "post"), ("/jobs/{job_id}/artifacts", "get"),
        ("/jobs/{job_id}/artifacts/{name}", "get"), ("/healthz", "get"), ("/readyz", "get"),
        ("/spec/schema", "get"), ("/jobs/validate", "post"),
    }  # fmt: skip
    assert {(path, method) for path, ops in paths.items() for method in ops} == expected
    post = paths["/jobs"]["post"]
    assert set(post["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]) >= {
        "model",
        "spec",
    }
    for code in ("413", "415", "422"):
        assert post["responses"][code]["content"][PROBLEM]["schema"] == {
            "$ref": "#/components/schemas/Problem"
        }
    assert "409" in paths["/jobs/{job_id}"]["delete"]["responses"]
    assert set(schema["components"]["schemas"]["Problem"]["properties"]) >= {
        "type",
        "title",
        "status",
        "detail",
    }


def test_gpu_jobs_go_to_the_gpu_queue(client: TestClient, settings: Settings, tmp_path: Path) -> None:
    broker = redis.Redis.from_url(settings.effective_broker_url)
    before = {q: broker.llen(q) for q in (settings.queue_cpu, settings.queue_gpu)}
    model = write_model(tmp_path)
    response = client.post(
        "/jobs",
        files={"model": (model.name, model.read_bytes())},
        data={"spec": json.dumps(SPEC), "queue": "gpu"},
    )
    assert response.status_code == 202 and response.json()["queue"] == "gpu"
    assert broker.llen(settings.queue_gpu) == before[settings.queue_gpu] + 1
    assert broker.llen(settings.queue_cpu) == before[settings.queue_cpu]


def test_list_paging_bounds_are_422_not_a_crash(client: TestClient) -> None:
    for query in ("offset=9223372036854775808", "offset=-1", "limit=0", "limit=201", "limit=x"):
        response = client.get(f"/jobs?{query}")
        assert response.status_code == 422, (query, response.text)
        assert response.headers["content-type"] == PROBLEM
