"""`mcs serve` leaves nothing behind when it is killed (issue 10, item 4): its worker child stops with it,
and upload folders of requests that died are removed at the next start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from svc_helpers import ROOT
from test_service_embedded import clean_env, free_port

from mcs_common.settings import Settings
from service.app import create_app


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(child) for child in text]
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_killed_serve_takes_its_worker_child_with_it(tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "serve.log"
    command = [
        sys.executable,
        "-m",
        "mcs",
        "serve",
        "--data-dir",
        str(tmp_path / "data"),
        "--port",
        str(port),
    ]
    with log.open("ab") as out:
        serve = subprocess.Popen(command, env=clean_env(), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        worker: int | None = None
        while worker is None or b" ready." not in log.read_bytes():
            assert serve.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            worker = next(iter(children(serve.pid)), None)
            time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code == 200
        os.kill(serve.pid, signal.SIGKILL)  # no handler runs: the parent just vanishes
        serve.wait(10)
        deadline = time.monotonic() + 60  # the watch polls every second; a loaded machine delays the shutdown
        while alive(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(worker), f"worker {worker} outlived its parent\n{log.read_text()[-2000:]}"
        assert "the parent process" in log.read_text()
    finally:
        if serve.poll() is None:
            serve.kill()
        if worker is not None and alive(worker):
            os.kill(worker, signal.SIGKILL)


def test_upload_folders_of_dead_requests_are_removed_at_start(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", auth="disabled", reaper_interval_s=0)  # type: ignore[call-arg]
    settings.staging_dir.mkdir(parents=True)
    old, fresh = settings.staging_dir / "old", settings.staging_dir / "fresh"
    for folder in (old, fresh):
        folder.mkdir()
        (folder / "model.pth").write_bytes(b"partial")
    week_ago = time.time() - 7 * 24 * 3600
    for path in (old / "model.pth", old):
        os.utime(path, (week_ago, week_ago))
    with TestClient(create_app(settings)):
        pass
    assert not old.exists()
    assert (fresh / "model.pth").read_bytes() == b"partial"  # may be an upload in flight elsewhere
