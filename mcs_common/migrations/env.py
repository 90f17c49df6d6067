"""Alembic's environment: runs on the connection `mcs_common.migrate` hands over (its lock held), or, for
the `alembic` command line, on `sqlalchemy.url`. SQLite alters tables in batch mode (copy and move)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from mcs_common.models import Base


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(url=context.config.get_main_option("sqlalchemy.url"), target_metadata=Base.metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    given = context.config.attributes.get("connection")
    if given is not None:
        run(given)
    else:
        engine = create_engine(context.config.get_main_option("sqlalchemy.url") or "")
        with engine.begin() as connection:
            run(connection)
