"""`mcs serve`: the API under uvicorn and, in embedded mode, one Celery worker as a supervised child.

Embedded mode needs no Redis and no PostgreSQL: SQLite (WAL) and Kombu's `filesystem://` transport live
under the data dir. The worker is a separate process (not a thread) so the same task code runs as in a
cluster, time limits work, and a crash in a job cannot take the API down.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import uvicorn

from mcs_common.settings import Settings
from service.app import create_app

log = logging.getLogger(__name__)
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class WorkerChild:
    """Runs `python -m worker` and restarts it (with a pause) if it dies while the API is serving."""

    def __init__(self, settings: Settings, queues: str = "cpu,gpu") -> None:
        self.settings = settings
        self.queues = queues
        self.process: subprocess.Popen[bytes] | None = None
        self.stopping = threading.Event()
        self.supervisor = threading.Thread(target=self._supervise, name="mcs-worker-supervisor", daemon=True)

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["MCS_DATA_DIR"] = str(self.settings.data_dir)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p)
        return env

    def _spawn(self) -> None:
        command = [sys.executable, "-m", "worker", "--queues", self.queues, "--concurrency", "1"]
        self.process = subprocess.Popen(command, env=self._env(), cwd=str(PROJECT_ROOT))
        log.info("started worker child pid %d", self.process.pid)

    def start(self) -> None:
        self._spawn()
        self.supervisor.start()

    def _supervise(self) -> None:
        while not self.stopping.wait(1.0):
            if self.process is not None and self.process.poll() is not None:
                log.error("worker child exited with %s; restarting in 2 s", self.process.returncode)
                if self.stopping.wait(2.0):
                    return
                self._spawn()

    def stop(self, timeout: float = 20.0) -> None:
        """Warm shutdown (SIGTERM lets a running job finish its current step), then kill."""
        self.stopping.set()
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def serve(settings: Settings, *, with_worker: bool, demo: bool = False, exit_after_demo: bool = False) -> int:
    """Serve until Ctrl-C (or, with exit_after_demo, until the demo ends); return an exit code."""
    settings.check_bind()
    settings.ensure_dirs()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    app = create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host=settings.host, port=settings.port, log_level="info", log_config=None)
    )
    child = WorkerChild(settings) if with_worker else None
    outcome = {"code": 0}
    if child:
        child.start()
    if demo:

        def run_demo() -> None:
            from service.demo import run_demo as demo_main

            while not server.started:
                time.sleep(0.05)
            try:
                demo_main(f"http://{settings.host}:{settings.port}", settings.data_dir)
            except Exception as exc:  # noqa: BLE001 - report and exit non-zero
                print(f"demo failed: {exc}", file=sys.stderr)
                outcome["code"] = 1
            if exit_after_demo:
                server.should_exit = True

        threading.Thread(target=run_demo, name="mcs-demo", daemon=True).start()

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # uvicorn re-raises the signal after its shutdown: stop the child too

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        server.run()
    except KeyboardInterrupt:
        pass  # Ctrl-C or SIGTERM: a normal way to stop
    finally:
        if child:
            child.stop()
    return outcome["code"]
