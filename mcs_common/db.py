"""SQLAlchemy 2.0 engine and sessions: SQLite (WAL, for embedded use) or PostgreSQL, chosen by URL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.orm import Session, sessionmaker

from mcs_common.models import Base


def make_engine(url: str) -> Engine:
    """An engine whose SQLite connections use WAL, so the API reads while a worker writes."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def init_db(engine: Engine) -> None:
    """Create the tables if they are missing, and add columns that later versions added (all nullable or
    defaulted), so a data dir from an earlier version keeps working. No other migrations yet."""
    Base.metadata.create_all(engine)
    known = {column["name"] for column in inspect(engine).get_columns("jobs")}
    added = {
        "owner": "VARCHAR(64) NOT NULL DEFAULT 'local'",
        "idempotency_key": "VARCHAR(255)",
        "request_hash": "VARCHAR(64)",
        "time_limit_s": "INTEGER",
        "method": "VARCHAR(64)",
        # search jobs (issue 11); an Alembic migration replaces this list once migrations land
        "parent_id": ("UUID" if engine.dialect.name == "postgresql" else "CHAR(32)")
        + " REFERENCES jobs(id) ON DELETE CASCADE",
        "trial_index": "INTEGER",
        "trial": "JSON",
    }
    with engine.begin() as connection:
        for name, ddl in added.items():
            if name not in known:
                connection.execute(text(f"ALTER TABLE jobs ADD COLUMN {name} {ddl}"))
        if "parent_id" not in known:
            connection.execute(text("CREATE INDEX IF NOT EXISTS ix_jobs_parent_id ON jobs (parent_id)"))
            connection.execute(
                text(
                    "CREATE UNIQUE INDEX IF NOT EXISTS uq_jobs_parent_trial ON jobs (parent_id, trial_index)"
                )
            )


def ping(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session committed on success and rolled back on error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
