"""Structured logs: JSON lines carrying the job id, from a real worker process and from API requests."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from svc_helpers import ROOT, SPEC, settings_env, wait_for, write_model

from mcs_common.logs import configure_logging, job_context
from mcs_common.settings import Settings
from service.app import create_app

from .test_metrics import stack_settings, submit


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """The process's logging pointed at a buffer for the test, then put back."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    configure_logging("INFO", "json", stream)
    yield stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def records(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_lines_carry_the_job_id_extras_and_tracebacks(log_stream: io.StringIO) -> None:
    log = logging.getLogger("mcs.test")
    with job_context("job-1"):
        log.info("inside %s", "the job", extra={"stage": "prune"})
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("failed")
    log.warning("outside")
    inside, failed, outside = records(log_stream.getvalue())
    assert (
        inside["message"] == "inside the job" and inside["job_id"] == "job-1" and inside["stage"] == "prune"
    )
    assert (
        inside["level"] == "INFO"
        and inside["logger"] == "mcs.test"
        and str(inside["time"]).endswith("+00:00")
    )
    assert failed["job_id"] == "job-1" and "RuntimeError: boom" in str(failed["exc_info"])
    assert outside["job_id"] is None


def test_text_format_and_a_bad_format() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = list(root.handlers)
    try:
        configure_logging("INFO", "text", stream)
        with job_context("job-2"):
            logging.getLogger("mcs.test").info("plain")
        assert "[job=job-2 req=None] plain" in stream.getvalue()
        with pytest.raises(ValueError, match="json or text"):
            configure_logging("INFO", "yaml", stream)
    finally:
        root.handlers[:] = saved


def test_api_requests_log_their_request_id_and_job_id(tmp_path: Path, log_stream: io.StringIO) -> None:
    app = create_app(Settings(data_dir=tmp_path / "data", auth="disabled", reaper_interval_s=0))

    @app.get("/jobs/{job_id}/probe")  # a sync route: runs in a worker thread, as most routes do
    def probe(job_id: str) -> dict[str, str]:
        logging.getLogger("mcs.test").info("probe")
        return {}

    @app.get("/probe")
    async def probe_async() -> dict[str, str]:
        logging.getLogger("mcs.test").info("async probe")
        return {}

    job_id = str(uuid.uuid4())
    with TestClient(app) as client:
        response = client.get(f"/jobs/{job_id}/probe", headers={"X-Request-ID": "req-42"})
        assert response.status_code == 200 and response.headers["x-request-id"] == "req-42"
        generated = client.get("/probe").headers["x-request-id"]
        assert len(generated) == 32
        assert client.get("/healthz", headers={"X-Request-ID": "bad id"}).headers["x-request-id"] != "bad id"
        assert client.get(f"/jobs/{job_id}", headers={"X-Request-ID": "req-43"}).status_code == 404
    logging.getLogger("mcs.test").info("outside any request")
    probes = {e["message"]: e for e in records(log_stream.getvalue()) if e["logger"] == "mcs.test"}
    assert probes["probe"]["job_id"] == job_id and probes["probe"]["request_id"] == "req-42"
    assert probes["async probe"]["request_id"] == generated and probes["async probe"]["job_id"] is None
    assert probes["outside any request"]["request_id"] is None


@pytest.mark.slow
def test_a_real_worker_logs_json_lines_with_the_job_id(tmp_path: Path) -> None:
    settings = stack_settings(tmp_path, uuid.uuid4().hex[:8])
    env = {**settings_env(settings), "MCS_LOG_FORMAT": "json"}
    stderr_path, stdout_path = tmp_path / "worker.jsonl", tmp_path / "worker.stdout"
    with stderr_path.open("wb") as stderr, stdout_path.open("wb") as stdout:
        worker = subprocess.Popen(
            [sys.executable, "-m", "mcs", "worker", "--queues", "cpu,gpu", "--loglevel", "INFO"],
            env=env,
            cwd=ROOT,
            stdout=stdout,  # Celery's start-up banner is printed there, not logged
            stderr=stderr,
        )
        try:
            deadline = time.monotonic() + 60
            while b" ready." not in stderr_path.read_bytes():
                assert worker.poll() is None and time.monotonic() < deadline, stderr_path.read_text()[-3000:]
                time.sleep(0.1)
            with TestClient(create_app(settings)) as client:
                job_id = submit(client, write_model(tmp_path / "in"), SPEC)
                assert wait_for(client, job_id)["state"] == "succeeded"
            time.sleep(0.5)  # Celery's "succeeded" line follows the task's return
        finally:
            worker.terminate()
            worker.wait(20)
    lines = [line for line in stderr_path.read_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message", "job_id"} <= set(e) for e in entries)
    about_the_job = [e for e in entries if job_id in str(e["message"]) or e["logger"].startswith("worker.")]
    messages = [e["message"] for e in about_the_job]
    assert "job started" in messages and "job ended: succeeded" in messages, messages
    assert any("received" in str(m) for m in messages) and any("succeeded in" in str(m) for m in messages)
    assert all(e["job_id"] == job_id for e in about_the_job), about_the_job
    task_process = {e["process"] for e in entries if e["message"] == "job started"}
    during = [e for e in entries if e["process"] in task_process and e["logger"] != "celery.worker.strategy"]
    assert all(
        e["job_id"] == job_id for e in during if e["logger"].startswith(("worker.", "compression_core"))
    )
