"""A real service for the client tests: uvicorn on a free port, SQLite, Redis as the broker and a real
`mcs worker` process (the service's own test helpers start it)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from mcs_common.settings import Settings
from service.app import create_app
from service.auth import create_token
from tests.service.svc_helpers import ROOT, WorkerProcess, settings_env

REDIS_URL = "redis://127.0.0.1:6379/13"


@dataclass
class Live:
    url: str
    settings: Settings
    tmp: Path
    token: str  # made with `mcs token create`, as an operator would
    other_token: str  # a second client, made with the service's own function


def cli_token(settings: Settings, name: str) -> str:
    """`mcs token create` against the test database: the token is the one line on stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "mcs", "token", "create", "--name", name],
        env=settings_env(settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "shown only this once" in done.stderr
    return done.stdout.strip()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_service(tmp: Path) -> Iterator[Live]:
    """The API on a free port with auth on, a real worker, and two tokens; stopped on exit."""
    tag = uuid.uuid4().hex[:10]
    settings = Settings(  # type: ignore[call-arg]
        data_dir=tmp / "data",
        database_url=f"sqlite:///{tmp / 'mcs.db'}",
        broker_url=REDIS_URL,
        queue_cpu=f"mcs-client-cpu-{tag}",
        queue_gpu=f"mcs-client-gpu-{tag}",
        progress_interval_s=0.05,
        cancel_poll_s=0.05,
        reaper_interval_s=0,
        auth="enabled",
    )
    app = create_app(settings)
    token = cli_token(settings, "live-ci")
    with app.state.sessions() as session:
        _, other_token = create_token(session, "live-other")
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    worker = WorkerProcess(settings, tmp / "worker.log")
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.05)
        worker.wait_ready()
        yield Live(f"http://127.0.0.1:{port}", settings, tmp, token, other_token)
    finally:
        worker.stop()
        server.should_exit = True
        thread.join(10)
