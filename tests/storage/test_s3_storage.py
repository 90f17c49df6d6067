"""MCS_STORAGE=s3 end to end: the API and a real worker process with data dirs of their own (as on two
machines), sharing only the database, Redis and an S3-compatible server (moto, on loopback)."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from svc_helpers import SPEC, WorkerProcess, wait_for, write_model

from compression_core.format import decode_state_dict
from mcs_common.settings import Settings
from service.app import create_app

from .conftest import bucket_keys

REDIS_URL = "redis://127.0.0.1:6379/13"


def s3_settings(data_dir: Path, database: Path, endpoint: str, bucket: str, tag: str) -> Settings:
    return Settings(
        data_dir=data_dir,
        database_url=f"sqlite:///{database}",
        broker_url=REDIS_URL,
        queue_cpu=f"mcs-s3-cpu-{tag}",
        queue_gpu=f"mcs-s3-gpu-{tag}",
        progress_interval_s=0.05,
        cancel_poll_s=0.05,
        reaper_interval_s=0,
        auth="disabled",
        storage="s3",
        s3_endpoint_url=endpoint,
        s3_bucket=bucket,
        s3_prefix="mcs/",
    )


@dataclass
class Machines:
    api: Settings
    worker: Settings
    client: TestClient
    endpoint: str
    bucket: str
    tmp: Path


@pytest.fixture
def machines(tmp_path: Path, s3_endpoint: str, bucket: str) -> Iterator[Machines]:
    tag = uuid.uuid4().hex[:10]
    database = tmp_path / "shared.db"
    api = s3_settings(tmp_path / "api-data", database, s3_endpoint, bucket, tag)
    worker_settings = s3_settings(tmp_path / "worker-data", database, s3_endpoint, bucket, tag)
    with TestClient(create_app(api)) as client:
        worker = WorkerProcess(worker_settings, tmp_path / "worker.log")  # inherits the AWS_* variables
        try:
            worker.wait_ready()
            yield Machines(api, worker_settings, client, s3_endpoint, bucket, tmp_path)
        finally:
            worker.stop()


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.mark.slow
def test_submit_run_download_through_the_bucket(machines: Machines) -> None:
    model = write_model(machines.tmp / "in")
    response = machines.client.post(
        "/jobs", files={"model": (model.name, model.read_bytes())}, data={"spec": json.dumps(SPEC)}
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    job = wait_for(machines.client, job_id)
    assert job["state"] == "succeeded", job

    keys = bucket_keys(machines.endpoint, machines.bucket)
    assert f"mcs/jobs/{job_id}/inputs/model.safetensors" in keys
    for artifact in job["artifacts"]:
        assert f"mcs/jobs/{job_id}/artifacts/{artifact['sha256']}/{artifact['name']}" in keys

    downloads = {}
    for artifact in job["artifacts"]:
        response = machines.client.get(artifact["url"])
        assert response.status_code == 200, response.text
        assert response.headers["etag"] == f'"{artifact["sha256"]}"'
        assert int(response.headers["content-length"]) == artifact["size"] == len(response.content)
        assert f'filename="{artifact["name"]}"' in response.headers["content-disposition"]
        assert hashlib.sha256(response.content).hexdigest() == artifact["sha256"]
        downloads[artifact["name"]] = response.content
        if artifact["name"] == "report.html":  # the same sandboxing headers as from the data dir
            assert "sandbox" in response.headers["content-security-policy"]
            assert response.headers["content-disposition"].startswith("inline")
        again = machines.client.get(artifact["url"], headers={"If-None-Match": response.headers["etag"]})
        assert again.status_code == 304
        head = machines.client.head(artifact["url"])  # headers only, the object not read
        assert head.status_code == 200 and head.content == b""
        assert head.headers["etag"] == response.headers["etag"]
        assert int(head.headers["content-length"]) == artifact["size"]
    assert set(downloads) == {"model.pth", "model.bin", "metrics.json", "report.html"}
    decoded = decode_state_dict(downloads["model.bin"])
    assert set(decoded) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    assert json.loads(downloads["metrics.json"])["totals"]["params"] == 32 * 48 + 32 + 10 * 32 + 10

    # nothing of the job stays on either machine's disk: the bucket holds it all
    assert files_under(machines.worker.data_dir / "jobs") == []
    assert files_under(machines.api.data_dir / "jobs") == []
    digests = {a["sha256"] for a in job["artifacts"]}
    for root in (machines.worker.data_dir, machines.api.data_dir):
        for path in files_under(root):
            assert path.stat().st_size == 0 or hashlib.sha256(path.read_bytes()).hexdigest() not in digests

    assert machines.client.delete(f"/jobs/{job_id}").status_code == 204
    assert [k for k in bucket_keys(machines.endpoint, machines.bucket) if job_id in k] == []


def test_an_unreachable_bucket_queues_nothing(
    tmp_path: Path, s3_endpoint: str, s3_env: dict[str, str]
) -> None:
    settings = s3_settings(tmp_path / "api", tmp_path / "db.sqlite", s3_endpoint, "no-such-bucket", "x")
    model = write_model(tmp_path / "in")
    with TestClient(create_app(settings)) as client:
        response = client.post(
            "/jobs", files={"model": (model.name, model.read_bytes())}, data={"spec": json.dumps(SPEC)}
        )
        assert response.status_code == 503, response.text
        assert "artifact store" in response.json()["detail"]
        assert client.get("/jobs").json()["total"] == 0
    assert files_under(settings.data_dir / "jobs") == []


def test_s3_storage_needs_a_bucket(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="MCS_S3_BUCKET"):
        Settings(data_dir=tmp_path, storage="s3")


def test_local_storage_is_the_default(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).storage == "local"
