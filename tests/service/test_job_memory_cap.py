"""`MCS_JOB_MEMORY_BYTES` on a real worker (Celery prefork child, Redis, SQLite): a job that needs more
fails at once naming the setting and its stage, on its first attempt (the child is not OOM-killed and
the job is not delivered again), and the same child then runs a job that fits."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import make_settings
from fastapi.testclient import TestClient
from safetensors.torch import save_file
from svc_helpers import SPEC, WorkerProcess, wait_for, write_model

from service.app import create_app

CAP = 96 << 20  # what a job may add to its worker child; the small job needs far less
BIG_SPEC = {
    "version": 1,
    "rules": [{"select": {"name": "*.weight"}, "steps": [{"type": "lowrank", "rank": 8}]}],
}


@pytest.fixture(scope="module")
def client(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str, session_tag: str
) -> Iterator[tuple[TestClient, Path]]:
    tmp = tmp_path_factory.mktemp("memory-cap")
    settings = make_settings(
        tmp / "data", f"sqlite:///{tmp / 'mcs.db'}", redis_url, f"memcap-{session_tag}", job_memory_bytes=CAP
    )
    with TestClient(create_app(settings)) as api:
        worker = WorkerProcess(settings, tmp / "worker.log")
        try:
            worker.wait_ready()
            yield api, tmp
        finally:
            worker.stop()


def submit(api: TestClient, model: Path, spec: object) -> str:
    response = api.post(
        "/jobs", files={"model": (model.name, model.read_bytes())}, data={"spec": json.dumps(spec)}
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def test_a_job_past_the_memory_cap_fails_naming_it_and_the_worker_runs_on(
    client: tuple[TestClient, Path],
) -> None:
    api, tmp = client
    big = tmp / "big.safetensors"  # 2 x 64 MiB of float32: loading it alone is past the cap
    generator = torch.Generator().manual_seed(0)
    save_file({f"fc{i}.weight": torch.randn(4096, 4096, generator=generator) for i in (1, 2)}, str(big))
    failed = wait_for(api, submit(api, big, BIG_SPEC), timeout=120)
    assert failed["state"] == "failed", failed
    assert f"MCS_JOB_MEMORY_BYTES={CAP:,} bytes" in failed["error"], failed["error"]
    assert "stage" in failed["error"] and failed["attempts"] == 1
    fits = wait_for(api, submit(api, write_model(tmp / "small"), SPEC), timeout=120)
    assert fits["state"] == "succeeded", fits
