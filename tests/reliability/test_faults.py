"""Nothing lost under faults, on the real stack (a private Redis, the API under uvicorn, two Celery
workers, SQLite): a worker SIGKILLed mid-job, the API restarted while jobs run, Redis killed and restarted.
Every submitted job must end in a final state with artifacts whose SHA-256 matches the bytes served."""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import select
from svc_helpers import SLOW_SPEC, SPEC, write_model, write_slow_model

from compression_core.format import decode_state_dict
from compression_core.io import load_state_dict
from mcs_common.db import init_db, make_engine, make_session_factory
from mcs_common.models import Job
from mcs_common.settings import Settings
from service.auth import create_token
from service.dispatch import Dispatcher

from .hostile import SystemCall
from .stack import Proc, RedisServer, free_port, stack_env, start_api, start_worker

FINAL = ("succeeded", "failed", "cancelled")


def submit(client: httpx.Client, model: Path, spec: object, key: str) -> str:
    with model.open("rb") as handle:
        response = client.post(
            "/jobs",
            files={"model": (model.name, handle)},
            data={"spec": json.dumps(spec)},
            headers={"Idempotency-Key": key},
        )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def get(client: httpx.Client, url: str, attempts: int = 100) -> httpx.Response:
    """GET through an API that may be restarting: retry connection errors for a while."""
    for _ in range(attempts):
        try:
            return client.get(url)
        except httpx.TransportError:
            time.sleep(0.2)
    raise TimeoutError(f"the API did not answer {url}")


def lease_owner_pid(factory: Any, job_id: str) -> int | None:
    with factory() as session:
        owner = session.scalar(select(Job.lease_owner).where(Job.id == uuid.UUID(job_id)))
    return int(owner.split(":")[1]) if owner else None


@pytest.mark.slow
def test_jobs_survive_a_killed_worker_an_api_restart_and_a_redis_restart(tmp_path: Path) -> None:
    redis_server = RedisServer(tmp_path / "redis")
    redis_server.start()
    data_dir, port = tmp_path / "data", free_port()
    values = {
        "data_dir": data_dir,
        "database_url": f"sqlite:///{data_dir / 'mcs.db'}",
        "broker_url": redis_server.url,
        "auth": "enabled",
        "lease_s": 2,
        "reaper_interval_s": 0.5,
        "requeue_after_s": 3,
        "max_attempts": 3,
        "progress_interval_s": 0.1,
    }
    env = stack_env(**values)
    settings = Settings(**values)  # type: ignore[arg-type]
    settings.ensure_dirs()
    engine = make_engine(settings.effective_database_url)
    init_db(engine)
    factory = make_session_factory(engine)
    with factory() as session:
        _, secret = create_token(session, "fault-test", admin=True)
    processes: list[Proc] = []
    try:
        api = start_api(env, port, tmp_path / "api.log")
        workers = [start_worker(env, tmp_path / f"worker{i}.log") for i in range(2)]
        processes += [api, *workers]
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {secret}"}, timeout=30
        )
        (tmp_path / "slow").mkdir()
        slow = write_slow_model(tmp_path / "slow", tensors=150)
        jobs = {submit(client, slow, SLOW_SPEC, f"slow-{i}"): "slow" for i in range(2)}
        for i in range(3):
            jobs[submit(client, write_model(tmp_path / f"m{i}", seed=i), SPEC, f"fast-{i}")] = "fast"
        assert submit(client, slow, SLOW_SPEC, "slow-0") in jobs  # a retried submission: no new job

        # 1. SIGKILL the worker running a slow job, mid-job (after its first progress report)
        victim_job = next(j for j, kind in jobs.items() if kind == "slow")
        deadline = time.monotonic() + 60
        while True:
            job = get(client, f"/jobs/{victim_job}").json()
            pid = lease_owner_pid(factory, victim_job)
            if job["state"] == "running" and pid and 0.05 < job["progress"]["fraction"] < 0.5:
                break
            assert job["state"] not in FINAL and time.monotonic() < deadline, job
            time.sleep(0.05)
        victim = next(w for w in workers if w.pid == os.getpgid(pid))
        victim.kill()
        workers.remove(victim)
        workers.append(start_worker(env, tmp_path / "worker-replacement.log"))
        processes.append(workers[-1])

        # 2. restart the API while jobs run
        api.stop()
        api = start_api(env, port, tmp_path / "api.log")
        processes.append(api)

        # 3. kill Redis and start it again; then submit more jobs, and a poisoned one behind the API's back
        redis_server.restart()
        queued = [j for j in jobs if get(client, f"/jobs/{j}").json()["state"] == "queued"]
        redis.Redis(port=redis_server.port).flushall()  # and it lost its queue: the DB must requeue
        for i in range(2):
            jobs[submit(client, write_model(tmp_path / f"late{i}", seed=10 + i), SPEC, f"late-{i}")] = "fast"
        marker = tmp_path / "pwned"
        poisoned = poison_job(settings, factory, marker)

        finished = {job_id: wait_final(client, job_id, 75) for job_id in jobs}
        poisoned_job = wait_final(client, poisoned, 30)
        for job_id, job in finished.items():
            assert job["state"] == "succeeded", job
            check_artifacts(client, job, tmp_path / "downloads" / job_id)
        assert finished[victim_job]["attempts"] >= 2  # delivered again after its worker vanished
        assert all(finished[j]["state"] == "succeeded" for j in queued)  # lost from Redis, yet they ran
        assert poisoned_job["state"] == "failed" and "refused" in poisoned_job["error"], poisoned_job
        assert not marker.exists()
        assert all(worker.alive() for worker in workers) and api.alive()
        assert len(client.get("/jobs", params={"limit": 50}).json()["items"]) == len(jobs) + 1
    finally:
        for process in processes:
            process.stop()
        redis_server.kill()
        engine.dispose()


def wait_final(client: httpx.Client, job_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = get(client, f"/jobs/{job_id}").json()
        if job["state"] in FINAL:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['state']}: {job}"
        time.sleep(0.1)


def check_artifacts(client: httpx.Client, job: dict[str, Any], folder: Path) -> None:
    """The SHA-256 in the job is of the bytes served, and model.bin decodes to model.pth."""
    folder.mkdir(parents=True)
    assert [a["name"] for a in job["artifacts"]] == ["model.pth", "model.bin", "metrics.json", "report.html"]
    for artifact in job["artifacts"]:
        body = client.get(artifact["url"]).content
        assert hashlib.sha256(body).hexdigest() == artifact["sha256"] and len(body) == artifact["size"]
        (folder / artifact["name"]).write_bytes(body)
    decoded, dense = decode_state_dict(folder / "model.bin"), load_state_dict(folder / "model.pth")
    assert decoded.keys() == dense.keys() and all(decoded[k].equal(dense[k]) for k in dense)


def poison_job(settings: Settings, factory: Any, marker: Path) -> str:
    """A job whose input was swapped for a code-carrying pickle after validation: the worker's own loader
    must refuse it (the job fails with the reason), run nothing, and stay up."""
    import pickle

    job_id = uuid.uuid4()
    inputs = settings.jobs_dir / str(job_id) / "inputs"
    inputs.mkdir(parents=True)
    (inputs / "model.pth").write_bytes(pickle.dumps({"w": SystemCall(str(marker))}))
    with factory() as session:
        session.add(Job(id=job_id, spec=SPEC, inputs={"model": "inputs/model.pth"}, owner="fault-test"))
        session.commit()
    Dispatcher(settings).send(job_id, "cpu")
    return str(job_id)
