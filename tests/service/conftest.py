"""Fixtures for the service tests: real Redis (own DB number, unique queue names), a throwaway PostgreSQL
database per session, SQLite in a temp dir, and apps built on them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import make_url

from mcs_common.db import make_engine
from mcs_common.models import Base
from mcs_common.settings import Settings
from service.app import create_app

REDIS_URL = "redis://127.0.0.1:6379/13"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="session")
def session_tag() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def redis_url(session_tag: str) -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    yield REDIS_URL
    for key in client.scan_iter(f"*{session_tag}*"):
        client.delete(key)


@pytest.fixture(scope="session")
def postgres_url(session_tag: str) -> Iterator[str]:
    name = f"mcs_test_{session_tag}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'mcs.db'}"
    url: str = request.getfixturevalue("postgres_url")
    reset_database(url)
    return url


def reset_database(url: str) -> None:
    engine = make_engine(url)
    Base.metadata.drop_all(engine)
    engine.dispose()


def make_settings(
    data_dir: Path, database_url: str, broker_url: str, tag: str, **overrides: object
) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "broker_url": broker_url,
        "queue_cpu": f"mcs-test-cpu-{tag}",
        "queue_gpu": f"mcs-test-gpu-{tag}",
        "progress_interval_s": 0.05,
        "cancel_poll_s": 0.05,
        "reaper_interval_s": 0,
        "auth": "disabled",  # auth has its own tests (tests/reliability); these test everything else
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path, database_url: str, redis_url: str, session_tag: str) -> Settings:
    """Settings for API-only tests: jobs go to a Redis queue that no worker consumes, so they stay queued."""
    return make_settings(tmp_path / "data", database_url, redis_url, f"idle-{session_tag}")


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def backend_name(url: str) -> str:
    return make_url(url).get_backend_name()
