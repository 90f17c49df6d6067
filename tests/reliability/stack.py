"""The real stack as separate processes on loopback, for fault tests and the load benchmark: a private
redis-server (appendonly, its own port and folder, so it can be killed without touching the shared one),
the API under uvicorn (`mcs serve --no-worker`), and Celery workers (`mcs worker`), each in its own
process group so SIGKILL takes the worker and its pool children at once."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(check: object, what: str, log: Path | None, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise TimeoutError(f"{what} did not come up in {timeout} s\n{tail}")


class Proc:
    """A child process in its own session (process group), with its output in a log file."""

    def __init__(self, command: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL to the whole process group: no handler runs, no cleanup happens."""
        if self.alive():
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 20.0) -> None:
        if self.alive():
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()


class RedisServer:
    """A private redis-server with an append-only file fsynced on every write: a restart keeps the queue."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder, self.port = folder, port or free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)]
        command += ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
        self.proc = Proc(command, self.folder / "redis.log")
        import redis

        client = redis.Redis(port=self.port)
        _wait(lambda: client.ping(), "redis-server", self.folder / "redis.log", 20)

    def kill(self) -> None:
        if self.proc:
            self.proc.kill()

    def restart(self) -> None:
        self.kill()
        self.start()


def stack_env(**values: object) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MCS_")}
    env.update({f"MCS_{key.upper()}": str(value) for key, value in values.items()})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def start_api(env: dict[str, str], port: int, log: Path) -> Proc:
    api = Proc([sys.executable, "-m", "mcs", "serve", "--no-worker", "--port", str(port)], log, env)
    _wait(lambda: httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200, "API", log)
    return api


def start_worker(env: dict[str, str], log: Path) -> Proc:
    worker = Proc(
        [sys.executable, "-m", "mcs", "worker", "--queues", "cpu,gpu", "--loglevel", "INFO"], log, env
    )
    _wait(lambda: b" ready." in log.read_bytes(), "worker", log)
    return worker
