"""Helpers shared by the service tests: models on disk, a real worker process, polling."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from mcs_common.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
FINISHED = ("succeeded", "failed", "cancelled")

SPEC = {
    "version": 1,
    "rules": [
        {
            "name": "weights",
            "select": {"name": "*.weight"},
            "steps": [{"type": "prune", "sparsity": 0.8}, {"type": "quantize", "k": 8, "init": "linear"}],
        }
    ],
}


def small_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "fc1.weight": torch.randn(32, 48, generator=generator),
        "fc1.bias": torch.randn(32, generator=generator),
        "fc2.weight": torch.randn(10, 32, generator=generator),
        "fc2.bias": torch.randn(10, generator=generator),
    }


def write_model(folder: Path, name: str = "model.safetensors", seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if path.suffix == ".safetensors":
        save_file(small_state_dict(seed), str(path))
    else:
        torch.save(small_state_dict(seed), path)
    return path


def write_slow_model(folder: Path, tensors: int = 200) -> Path:
    """Many tensors: a job over them takes seconds, so it can be cancelled while running."""
    generator = torch.Generator().manual_seed(1)
    path = folder / "slow.safetensors"
    save_file(
        {f"layer{i}.weight": torch.randn(128, 128, generator=generator) for i in range(tensors)}, str(path)
    )
    return path


SLOW_SPEC = {
    "version": 1,
    "rules": [
        {"select": {"name": "*"}, "steps": [{"type": "quantize", "k": 64, "iters": 300, "init": "linear"}]}
    ],
}


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process see the same settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MCS_")}
    values: dict[str, Any] = settings.model_dump(exclude_none=True)
    for key, value in values.items():
        env[f"MCS_{key.upper()}"] = (
            value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
        )
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


class WorkerProcess:
    """A real `mcs worker` process (Celery prefork, concurrency 1) consuming the test's queues."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.log_path = log_path
        self.log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mcs", "worker", "--queues", "cpu,gpu", "--loglevel", "INFO"],
            env=settings_env(settings),
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b" ready." in self.log_path.read_bytes():
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"worker not ready: {self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def wait_for(
    client: Any, job_id: str, states: tuple[str, ...] = FINISHED, timeout: float = 60.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} is {job['state']} after {timeout} s: {job}")
        time.sleep(0.05)


@dataclass
class Stack:
    """An app, its settings and a scratch folder, with a real Celery worker behind it."""

    settings: Settings
    client: Any  # fastapi.testclient.TestClient
    tmp: Path


@contextmanager
def worker_stack(tmp: Path, redis_url: str, tag: str) -> Iterator[Stack]:
    """The API on SQLite and the test Redis with one real worker process (for module-scoped fixtures)."""
    from conftest import make_settings
    from fastapi.testclient import TestClient

    from service.app import create_app

    settings = make_settings(tmp / "data", f"sqlite:///{tmp / 'mcs.db'}", redis_url, tag)
    with TestClient(create_app(settings)) as client:
        worker = WorkerProcess(settings, tmp / "worker.log")
        try:
            worker.wait_ready()
            yield Stack(settings, client, tmp)
        finally:
            worker.stop()
