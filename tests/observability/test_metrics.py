"""/metrics: parsed with prometheus_client's own parser; the values follow jobs submitted to and run by a
real worker process over Redis, and the duration histogram's SQL is checked on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from svc_helpers import SLOW_SPEC, SPEC, WorkerProcess, wait_for, write_model, write_slow_model

from mcs_common.models import Job, JobState, utcnow
from mcs_common.settings import Settings
from service.app import create_app
from service.auth import create_token
from service.observability import DURATION_BUCKETS, main_method

from .conftest import PG_ADMIN, REDIS_URL, scrape, value


def stack_settings(tmp: Path, tag: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp / "data",
        "database_url": f"sqlite:///{tmp / 'mcs.db'}",
        "broker_url": REDIS_URL,
        "queue_cpu": f"mcs-obs-cpu-{tag}",
        "queue_gpu": f"mcs-obs-gpu-{tag}",
        "progress_interval_s": 0.05,
        "cancel_poll_s": 0.05,
        "reaper_interval_s": 0,
        "auth": "disabled",
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


def submit(client: TestClient, model: Path, spec: object) -> str:
    response = client.post(
        "/jobs", files={"model": (model.name, model.read_bytes())}, data={"spec": json.dumps(spec)}
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def test_main_method_names_the_step_types_in_order() -> None:
    assert main_method(SPEC) == "prune+quantize"
    spec = {"rules": [{"steps": [{"type": "lowrank"}]}, {"steps": [{"type": "prune"}, {"type": "lowrank"}]}]}
    assert main_method(spec) == "lowrank+prune"
    assert main_method({"rules": []}) == "none"


def test_main_method_names_the_whole_model_methods_from_the_registry() -> None:
    lc = {"lc": {"steps": 2}, "rules": [{"steps": [{"type": "prune"}]}, {"steps": [{"type": "lowrank"}]}]}
    assert main_method(lc) == "lc+prune+lowrank"
    assert main_method({"sws": {}, "rules": []}) == "sws"
    assert main_method({"retrain": {}, "distill": {}, "rules": [{"steps": [{"type": "quantize"}]}]}) == (
        "retrain+distill+quantize"
    )


def test_metrics_need_an_admin_token_unless_public(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    with TestClient(create_app(stack_settings(tmp_path, tag, auth="enabled"))) as client:
        with client.app.state.sessions() as session:  # type: ignore[attr-defined]
            _, admin = create_token(session, "ops", admin=True)
            _, ci = create_token(session, "ci")
        assert client.get("/metrics").status_code == 401
        forbidden = client.get("/metrics", headers={"Authorization": f"Bearer {ci}"})
        assert forbidden.status_code == 403 and "admin" in forbidden.json()["detail"]
        samples = scrape(client, {"Authorization": f"Bearer {admin}"})
        assert value(samples, "mcs_jobs", state="queued", queue="cpu") == 0
    public = stack_settings(tmp_path / "public", tag, auth="enabled", metrics_public=True)
    with TestClient(create_app(public)) as client:
        scrape(client)  # no token
        assert client.get("/jobs").status_code == 401  # only /metrics is opened


@pytest.mark.slow
def test_metrics_follow_a_job_through_a_real_worker(tmp_path: Path) -> None:
    settings = stack_settings(tmp_path, uuid.uuid4().hex[:8], lease_s=3.0)
    queue = settings.queue_cpu
    model = write_model(tmp_path / "in")
    with TestClient(create_app(settings)) as client:
        before = scrape(client)
        assert value(before, "mcs_broker_up") == 1
        assert value(before, "mcs_queue_depth", queue=queue, source="broker") == 0
        job_id = submit(client, model, SPEC)  # no worker yet: it waits in Redis
        queued = scrape(client)
        assert value(queued, "mcs_jobs", state="queued", queue="cpu") == 1
        assert value(queued, "mcs_queue_depth", queue=queue, source="broker") == 1
        uploaded = value(queued, "mcs_upload_bytes_total") - value(before, "mcs_upload_bytes_total")
        assert uploaded > model.stat().st_size  # the multipart body: the file and the spec

        worker = WorkerProcess(settings, tmp_path / "worker.log")
        try:
            worker.wait_ready()
            finished = wait_for(client, job_id)
            assert finished["state"] == "succeeded"
            done = scrape(client)
            assert value(done, "mcs_jobs", state="queued", queue="cpu") == 0
            assert value(done, "mcs_jobs", state="succeeded", queue="cpu") == 1
            assert value(done, "mcs_queue_depth", queue=queue, source="broker") == 0
            labels = {"method": "prune+quantize", "state": "succeeded"}
            assert value(done, "mcs_job_duration_seconds_count", **labels) == 1
            assert value(done, "mcs_job_duration_seconds_bucket", le="+Inf", **labels) == 1
            # the histogram measures started_at -> finished_at of the job (no bound on how fast it ran)
            took = datetime.fromisoformat(finished["finished_at"]) - datetime.fromisoformat(
                finished["started_at"]
            )
            assert value(done, "mcs_job_duration_seconds_sum", **labels) == pytest.approx(
                took.total_seconds(), abs=0.01
            )
            assert value(done, "mcs_workers_live") == 0  # idle: it holds no lease

            clock = time.monotonic()
            slow = submit(client, write_slow_model(tmp_path / "in"), SLOW_SPEC)
            wait_for(client, slow, ("running",))
            running = scrape(client)
            since_submit = time.monotonic() - clock
            assert value(running, "mcs_workers_live") == 1
            (age,) = [
                v for (name, labels_), v in running.items() if name == "mcs_worker_heartbeat_age_seconds"
            ]
            (worker_label,) = [
                dict(labels_)["worker"]
                for (name, labels_) in running
                if name == "mcs_worker_heartbeat_age_seconds"
            ]
            assert worker_label.startswith(f"{socket.gethostname()}:")
            # the lease was taken after the submission, so the last renewal is at most that old (renewals
            # every lease/3 s keep it younger still, but a loaded machine may delay them)
            assert 0 <= age <= since_submit + 1
            assert client.post(f"/jobs/{slow}/cancel").status_code == 202
            assert wait_for(client, slow)["state"] == "cancelled"
            after = scrape(client)
            assert value(after, "mcs_workers_live") == 0
            assert value(after, "mcs_job_duration_seconds_count", method="quantize", state="cancelled") == 1
        finally:
            worker.stop()


def test_embedded_queue_depth_comes_from_the_database(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", auth="disabled", reaper_interval_s=0)
    assert settings.embedded
    with TestClient(create_app(settings)) as client:
        submit(client, write_model(tmp_path / "in"), SPEC)
        samples = scrape(client)
    assert value(samples, "mcs_queue_depth", queue="cpu", source="database") == 1
    assert value(samples, "mcs_queue_depth", queue="gpu", source="database") == 0
    assert not any(name == "mcs_broker_up" for name, _ in samples)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'mcs.db'}"
        return
    name = f"mcs_obs_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_duration_histogram_buckets_on_each_database(tmp_path: Path, database_url: str) -> None:
    """Known run times in, exact cumulative buckets out: the SQL's epoch arithmetic on both backends."""
    settings = stack_settings(tmp_path, "hist", database_url=database_url)
    seconds = [0.5, 3.0, 3.0, 45.0, 4000.0]
    with TestClient(create_app(settings)) as client:
        now = utcnow()
        with client.app.state.sessions() as session:  # type: ignore[attr-defined]
            for run in seconds:
                session.add(
                    Job(
                        state=JobState.succeeded,
                        queue="cpu",
                        spec={},
                        method="lowrank",
                        started_at=now - timedelta(seconds=run),
                        finished_at=now,
                    )
                )
            session.add(Job(state=JobState.failed, queue="gpu", spec={}, started_at=now, finished_at=now))
            session.add(Job(state=JobState.running, queue="cpu", spec={}, method="lowrank", started_at=now))
            session.commit()
        samples = scrape(client)
    labels = {"method": "lowrank", "state": "succeeded"}
    for bound in DURATION_BUCKETS:
        expected = sum(1 for run in seconds if run <= bound)
        assert value(samples, "mcs_job_duration_seconds_bucket", le=str(bound), **labels) == expected, bound
    assert value(samples, "mcs_job_duration_seconds_count", **labels) == len(seconds)
    assert value(samples, "mcs_job_duration_seconds_sum", **labels) == pytest.approx(sum(seconds), abs=0.01)
    assert value(samples, "mcs_job_duration_seconds_count", method="unknown", state="failed") == 1
    assert value(samples, "mcs_jobs", state="running", queue="cpu") == 1
    assert value(samples, "mcs_jobs", state="succeeded", queue="cpu") == len(seconds)
