"""Embedded mode as a user runs it: `mcs serve` subprocesses (uvicorn + a worker child over the
filesystem broker and SQLite) on a free port, a restart that must not lose a queued job, and the demo."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from svc_helpers import ROOT, SPEC, wait_for, write_model

from compression_core.format import decode_state_dict
from compression_core.io import load_state_dict


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MCS_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


@contextmanager
def serve(
    data_dir: Path, port: int, log: Path, *extra: str, env: dict[str, str] | None = None
) -> Iterator[httpx.Client]:
    command = [sys.executable, "-m", "mcs", "serve", "--data-dir", str(data_dir), "--port", str(port), *extra]
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, env={**clean_env(), **(env or {})}, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        yield client
    finally:
        client.close()
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0, log.read_text()[-3000:]


@pytest.mark.slow
def test_embedded_serve_runs_jobs_and_survives_a_restart(tmp_path: Path) -> None:
    data_dir, port, log = tmp_path / "mcs-data", free_port(), tmp_path / "serve.log"
    model = write_model(tmp_path / "in")
    with serve(data_dir, port, log, "--no-worker") as client:
        assert client.get("/healthz").json()["auth"] == "disabled"
        response = client.post(
            "/jobs", files={"model": (model.name, model.read_bytes())}, data={"spec": json.dumps(SPEC)}
        )
        assert response.status_code == 202
        waiting = response.json()["id"]
        assert client.get(f"/jobs/{waiting}").json()["state"] == "queued"
    assert (data_dir / "mcs.db").is_file()
    for message in (data_dir / "broker" / "messages").iterdir():  # the broker lost its messages
        message.unlink()

    with serve(data_dir, port, log) as client:
        job = wait_for(client, waiting)  # requeued from the database at startup
        assert job["state"] == "succeeded", job
        fresh = client.post(
            "/jobs", files={"model": (model.name, model.read_bytes())}, data={"spec": json.dumps(SPEC)}
        ).json()
        job = wait_for(client, fresh["id"])
        assert job["state"] == "succeeded", job
        for name in ("model.bin", "model.pth"):
            with client.stream("GET", f"/jobs/{job['id']}/artifacts/{name}") as response:
                assert response.status_code == 200
                (tmp_path / name).write_bytes(response.read())
    decoded, dense = decode_state_dict(tmp_path / "model.bin"), load_state_dict(tmp_path / "model.pth")
    assert decoded.keys() == dense.keys() and all(decoded[k].equal(dense[k]) for k in dense)
    assert "worker child pid" in log.read_text()
    assert "AUTH IS DISABLED" in log.read_text()  # loopback with MCS_AUTH unset: disabled, and loudly


def test_serve_with_auth_enabled_needs_a_token(tmp_path: Path) -> None:
    data_dir, port, log = tmp_path / "mcs-data", free_port(), tmp_path / "serve.log"
    with serve(data_dir, port, log, "--no-worker", env={"MCS_AUTH": "enabled"}) as client:
        assert client.get("/healthz").json()["auth"] == "enabled"
        assert client.get("/jobs").status_code == 401


@pytest.mark.slow
def test_serve_demo_exits_after_a_successful_demo(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "mcs",
        "serve",
        "--data-dir",
        str(tmp_path / "d"),
        "--port",
        str(free_port()),
    ]
    result = subprocess.run(
        [*command, "--demo", "--exit-after-demo"], env=clean_env(), cwd=ROOT, capture_output=True, timeout=180
    )
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()[-3000:]
    assert "decode(model.bin) == model.pth: True" in out
    assert "curl -sS -i -F model=@" in out and "If-None-Match" in out
    assert (tmp_path / "d" / "demo" / "lenet300.safetensors").is_file()
