"""Per-client limits hold under simultaneous submissions (issue 10, item 5): 20 POSTs at once under
`max_concurrent_jobs=2` accept exactly 2, on SQLite and PostgreSQL, against a real API process."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import psycopg
import pytest
from svc_helpers import SPEC, write_model

from mcs_common.db import init_db, make_engine, make_session_factory
from service.auth import create_token

from .stack import free_port, stack_env, start_api

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> object:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'mcs.db'}"
        return
    name = f"mcs_race_{tmp_path.name[-20:].replace('-', '_').lower()}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_twenty_simultaneous_submissions_accept_exactly_the_limit(tmp_path: Path, database_url: str) -> None:
    engine = make_engine(database_url)
    init_db(engine)
    with make_session_factory(engine)() as session:
        _, secret = create_token(session, "ci", max_concurrent_jobs=2)
    engine.dispose()
    port = free_port()
    env = stack_env(
        data_dir=tmp_path / "data", database_url=database_url, auth="enabled", reaper_interval_s=0
    )
    api = start_api(env, port, tmp_path / "api.log")
    model = write_model(tmp_path).read_bytes()
    barrier, codes = threading.Barrier(20), []
    lock = threading.Lock()

    def submit() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            barrier.wait()
            response = client.post(
                "/jobs",
                files={"model": ("m.safetensors", model)},
                data={"spec": json.dumps(SPEC)},
                headers={"Authorization": f"Bearer {secret}"},
            )
        with lock:
            codes.append(response.status_code)

    try:
        threads = [threading.Thread(target=submit) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            listing = client.get("/jobs", headers={"Authorization": f"Bearer {secret}"}, timeout=60)
        assert listing.status_code == 200, listing.text
        listed = listing.json()["total"]
    finally:
        api.stop()
    assert sorted(codes) == [202] * 2 + [429] * 18, codes
    assert listed == 2
