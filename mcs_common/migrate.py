"""Database schema upgrades with Alembic, run at start (`mcs serve`, the worker) and by `mcs migrate`.

Three cases, all ending at the newest revision (`head`):
- an empty database: every revision runs, the baseline creating the tables;
- a database from the release before migrations (tables, no `alembic_version`): it is adopted: columns that
  even older releases lacked are added, missing tables created, the baseline stamped, then later
  revisions run;
- a migrated database: the revisions it lacks run.
One process migrates at a time: a PostgreSQL advisory lock, or a lock file beside the SQLite database.
Adding a revision: see docs/migrations.md.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

from mcs_common.migrations.versions import v0001_baseline as baseline

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_PG_LOCK_KEY = 0x6D63735F6D6967  # "mcs_mig": one advisory lock id for every process of this service


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction, held by one migrating process at a time."""
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        with open(f"{database}.migrate.lock", "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                with engine.begin() as connection:
                    yield connection
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)
        return
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        yield connection


def _adopt(connection: Connection) -> None:
    """Bring a database made by `create_all` (the release before migrations) to the baseline, and stamp it."""
    known = {column["name"] for column in sa.inspect(connection).get_columns("jobs")}
    for name, ddl in baseline.LEGACY_COLUMNS.items():
        if name not in known:
            connection.execute(sa.text(f"ALTER TABLE jobs ADD COLUMN {name} {ddl}"))
    metadata = sa.MetaData()
    baseline.tables(metadata)
    metadata.create_all(connection, checkfirst=True)
    command.stamp(alembic_config(connection), baseline.revision)
    log.info("adopted a database from before migrations at revision %s", baseline.revision)


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Migrate to head; return the revisions before and after."""
    with _migration_lock(engine) as connection:
        tables = set(sa.inspect(connection).get_table_names())
        before = MigrationContext.configure(connection).get_current_revision()
        if before is None and "jobs" in tables:
            _adopt(connection)
        command.upgrade(alembic_config(connection), "head")
        after = MigrationContext.configure(connection).get_current_revision()
    if before != after:
        log.info("database migrated from %s to %s", before or "nothing", after)
    assert after is not None
    return before, after
