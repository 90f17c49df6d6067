"""Alembic keeps the data across versions: a database made by the release before migrations (its tables
frozen below, rows in them) is migrated on start and every job and token is intact; a new database gets
the newest schema, which is exactly what the models describe."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.orm import Session

from mcs_common.db import init_db, make_engine
from mcs_common.migrate import current_revision, head_revision
from mcs_common.models import Base, Job, Token


def previous_release_tables(metadata: sa.MetaData, *, with_later_columns: bool = True) -> None:
    """The schema `create_all` made in the release before migrations (a frozen copy, on purpose)."""
    stamp = sa.DateTime(timezone=True)
    later = [
        sa.Column("owner", sa.String(64), nullable=False, server_default="local"),
        sa.Column("idempotency_key", sa.String(255)),
        sa.Column("request_hash", sa.String(64)),
        sa.Column("time_limit_s", sa.Integer()),
        sa.Column("method", sa.String(64)),
    ]
    sa.Table(
        "jobs",
        metadata,
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("queue", sa.String(16), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("progress_stage", sa.String(64)),
        sa.Column("progress_fraction", sa.Float(), nullable=False),
        sa.Column("progress_message", sa.Text()),
        sa.Column("error", sa.Text()),
        sa.Column("metrics", sa.JSON()),
        sa.Column("artifacts", sa.JSON()),
        sa.Column("created_at", stamp, nullable=False),
        sa.Column("started_at", stamp),
        sa.Column("finished_at", stamp),
        sa.Column("updated_at", stamp, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(128)),
        sa.Column("lease_expires_at", stamp),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        *(later if with_later_columns else []),
        sa.Index("ix_jobs_created_at", "created_at"),
        sa.Index("ix_jobs_state_created", "state", "created_at"),
    )
    sa.Table(
        "tokens",
        metadata,
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("admin", sa.Boolean(), nullable=False),
        sa.Column("max_concurrent_jobs", sa.Integer()),
        sa.Column("max_upload_bytes", sa.BigInteger()),
        sa.Column("max_job_seconds", sa.Integer()),
        sa.Column("created_at", stamp, nullable=False),
        sa.Column("revoked_at", stamp),
    )


T0 = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


def job_rows() -> list[dict[str, object]]:
    base = {
        "progress_stage": None,
        "progress_fraction": 0.0,
        "progress_message": None,
        "error": None,
        "metrics": None,
        "artifacts": None,
        "started_at": None,
        "finished_at": None,
        "attempts": 0,
        "lease_owner": None,
        "lease_expires_at": None,
        "cancel_requested": False,
        "owner": "local",
        "idempotency_key": None,
        "request_hash": None,
        "time_limit_s": None,
        "method": None,
    }
    spec = {"version": 1, "rules": [{"select": {"name": "*"}, "steps": [{"type": "prune", "keep": 0.1}]}]}
    return [
        {
            **base,
            "id": uuid.uuid4(),
            "state": "queued",
            "queue": "cpu",
            "spec": spec,
            "inputs": {"model": "inputs/model.safetensors"},
            "created_at": T0,
            "updated_at": T0,
            "owner": str(uuid.uuid4()),
            "idempotency_key": "ci-42",
            "request_hash": "ab" * 32,
        },
        {
            **base,
            "id": uuid.uuid4(),
            "state": "succeeded",
            "queue": "gpu",
            "spec": spec,
            "inputs": {"model": "inputs/model.pth", "data": "inputs/data.npz"},
            "created_at": T0 + timedelta(minutes=1),
            "updated_at": T0 + timedelta(minutes=3),
            "started_at": T0 + timedelta(minutes=2),
            "finished_at": T0 + timedelta(minutes=3),
            "progress_stage": "done",
            "progress_fraction": 1.0,
            "attempts": 1,
            "metrics": {"ratio": 41.5, "layers": [{"name": "fc1", "bits": 3}]},
            "artifacts": [{"name": "model.bin", "size": 1234, "sha256": "cd" * 32}],
            "method": "prune",
            "time_limit_s": 600,
        },
        {
            **base,
            "id": uuid.uuid4(),
            "state": "failed",
            "queue": "cpu",
            "spec": spec,
            "inputs": {},
            "created_at": T0 + timedelta(minutes=4),
            "updated_at": T0 + timedelta(minutes=5),
            "error": "the rule selects nothing: 'x.*' — ünïcode kept",
            "attempts": 3,
            "cancel_requested": True,
            "lease_owner": "host:123:abc",
            "lease_expires_at": T0 + timedelta(minutes=6),
        },
    ]


def token_rows() -> list[dict[str, object]]:
    return [
        {
            "id": uuid.uuid4(),
            "name": "ci-main",
            "token_hash": "ef" * 32,
            "admin": False,
            "max_concurrent_jobs": 2,
            "max_upload_bytes": 5 * 1024**3,
            "max_job_seconds": 900,
            "created_at": T0,
            "revoked_at": None,
        },
        {
            "id": uuid.uuid4(),
            "name": "ops",
            "token_hash": "01" * 32,
            "admin": True,
            "max_concurrent_jobs": None,
            "max_upload_bytes": None,
            "max_job_seconds": None,
            "created_at": T0,
            "revoked_at": T0 + timedelta(days=1),
        },
    ]


def make_previous_release(url: str, *, with_later_columns: bool = True) -> tuple[list[dict], list[dict]]:
    engine = make_engine(url)
    metadata = sa.MetaData()
    previous_release_tables(metadata, with_later_columns=with_later_columns)
    metadata.create_all(engine)
    jobs, tokens = job_rows(), token_rows()
    if not with_later_columns:
        later = ("owner", "idempotency_key", "request_hash", "time_limit_s", "method")
        jobs = [{k: v for k, v in row.items() if k not in later} for row in jobs]
    with engine.begin() as connection:
        connection.execute(metadata.tables["jobs"].insert(), jobs)
        connection.execute(metadata.tables["tokens"].insert(), tokens)
    engine.dispose()
    return jobs, tokens


def as_dict(row: object, columns: list[str]) -> dict[str, object]:
    return {name: getattr(row, name) for name in columns}


def test_a_previous_release_database_migrates_with_every_job_and_token_intact(database_url: str) -> None:
    jobs, tokens = make_previous_release(database_url)
    engine = make_engine(database_url)
    assert current_revision(engine) is None
    init_db(engine)  # what `mcs serve` and the worker do at start
    assert current_revision(engine) == head_revision()
    with Session(engine) as session:
        found_jobs = {job.id: job for job in session.scalars(sa.select(Job))}
        found_tokens = {token.id: token for token in session.scalars(sa.select(Token))}
    assert len(found_jobs) == len(jobs) and len(found_tokens) == len(tokens)
    for row in jobs:
        assert as_dict(found_jobs[row["id"]], list(row)) == row  # type: ignore[index]
    for row in tokens:
        assert as_dict(found_tokens[row["id"]], list(row)) == row  # type: ignore[index]
    init_db(engine)  # a second start changes nothing
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_an_older_database_without_later_columns_is_adopted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    jobs, _ = make_previous_release(url, with_later_columns=False)
    engine = make_engine(url)
    init_db(engine)
    with Session(engine) as session:
        found = {job.id: job for job in session.scalars(sa.select(Job))}
    assert {found[row["id"]].owner for row in jobs} == {"local"}  # type: ignore[index]
    assert all(found[row["id"]].spec == row["spec"] for row in jobs)  # type: ignore[index]


def test_the_migrated_schema_is_what_the_models_say(database_url: str) -> None:
    """Every model change needs a revision: after `upgrade head` autogenerate finds nothing to do."""
    engine = make_engine(database_url)
    init_db(engine)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []


def test_mcs_migrate_command(tmp_path: Path) -> None:
    make_previous_release(f"sqlite:///{tmp_path / 'mcs.db'}")
    command = [sys.executable, "-m", "mcs", "migrate", "--data-dir", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"database at revision {head_revision()} (was unversioned)" in done.stdout
    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert again.stdout.strip() == f"database at revision {head_revision()}"
