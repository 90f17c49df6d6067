"""Fixtures for the reliability tests: an API on SQLite with auth enabled, tokens, and the service test
helpers (models on disk, worker processes)."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))

from mcs_common.settings import Settings  # noqa: E402
from service.app import create_app  # noqa: E402
from service.auth import create_token  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/13"


@pytest.fixture(scope="session")
def tag() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def idle_redis(tag: str) -> Iterator[str]:
    """The shared Redis, with queue names no worker consumes: submitted jobs stay queued."""
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    yield REDIS_URL
    for key in client.scan_iter(f"*{tag}*"):
        client.delete(key)


def rel_settings(data_dir: Path, broker_url: str, tag: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "database_url": f"sqlite:///{data_dir / 'mcs.db'}",
        "broker_url": broker_url,
        "queue_cpu": f"mcs-rel-cpu-{tag}",
        "queue_gpu": f"mcs-rel-gpu-{tag}",
        "reaper_interval_s": 0,
        "auth": "enabled",
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


@dataclass
class Api:
    settings: Settings
    client: TestClient

    def token(self, name: str, **options: object) -> dict[str, str]:
        """A new token's Authorization header."""
        with self.client.app.state.sessions() as session:  # type: ignore[attr-defined]
            _, secret = create_token(session, name, **options)  # type: ignore[arg-type]
        return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def api(tmp_path: Path, idle_redis: str, tag: str) -> Iterator[Api]:
    settings = rel_settings(tmp_path / "data", idle_redis, tag)
    with TestClient(create_app(settings)) as client:
        yield Api(settings, client)
