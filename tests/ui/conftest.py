"""Fixtures for the web page's tests: a real headless Chromium, and `mcs serve --demo` as a person runs it."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALL_HINT = (
    "the web page tests drive a real headless Chromium, and none was found on PATH. Install it with "
    "`apt-get install -y chromium` (Debian/Ubuntu package `chromium`); `make test` does this through "
    "scripts/ensure-services.sh, or set MCS_TEST_CHROMIUM to the browser's path."
)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def find_chromium() -> str | None:
    configured = os.environ.get("MCS_TEST_CHROMIUM")
    if configured:
        return configured
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class Browser:
    """One fresh Chromium process per call, with a throwaway profile: no state leaks between pages."""

    executable: str

    def _run(self, url: str, *extra: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        with tempfile.TemporaryDirectory(prefix="mcs-chromium-") as profile:
            done = subprocess.run(
                [self.executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url],
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        assert done.returncode == 0, f"chromium failed on {url}: {done.stderr[-2000:]}"
        return done

    def dom(self, url: str) -> str:
        """The page's DOM after it loaded, serialized (`--dump-dom`)."""
        return self._run(url, "--dump-dom").stdout

    def screenshot(self, url: str, path: Path, size: tuple[int, int] = (1200, 1400)) -> Path:
        self._run(url, f"--screenshot={path}", f"--window-size={size[0]},{size[1]}")
        assert path.is_file(), f"chromium wrote no screenshot of {url}"
        return path


@pytest.fixture(scope="session")
def browser() -> Browser:
    executable = find_chromium()
    if executable is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return Browser(executable)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """The embedded default, as on a fresh machine: no MCS_ settings (so auth is off on loopback)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MCS_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return {**env, **extra}


@dataclass
class Served:
    url: str
    data_dir: Path
    output: str  # what `mcs serve --demo` printed up to "Serving at"
    demo_job: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`mcs serve --demo` on a free port (SQLite, filesystem broker, worker child), kept running after
    its demo job, exactly what `make run` starts."""
    tmp = tmp_path_factory.mktemp("served")
    port, out = free_port(), tmp / "stdout.log"
    command = [sys.executable, "-m", "mcs", "serve", "--demo", "--data-dir", str(tmp / "data")]
    with out.open("wb") as sink:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            env=clean_env(),
            cwd=ROOT,
            stdout=sink,
            stderr=(tmp / "stderr.log").open("wb"),
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        while "Serving at" not in (text := out.read_text(errors="replace")):
            assert process.poll() is None, f"mcs serve exited: {text}\n{(tmp / 'stderr.log').read_text()}"
            assert time.monotonic() < deadline, f"the demo did not finish: {text}"
            time.sleep(0.2)
        job = re.search(r"demo: job ([0-9a-f-]{36}) succeeded", text)
        assert job, text
        yield Served(f"http://127.0.0.1:{port}", tmp / "data", text, job.group(1))
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # the server and its worker child, both ours
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
