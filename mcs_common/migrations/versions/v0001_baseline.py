"""Baseline: the schema of the last release before migrations (`create_all` plus a column check).

Revision ID: 0001_baseline
Revises:
Create Date: 2026-12-02

The tables are a frozen copy here, not imported from `mcs_common.models`: later revisions change the models,
this revision must keep creating what that release created. `mcs_common.migrate` also uses `tables()` to
adopt a database made by that release (it creates what is missing, then stamps this revision).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None


def tables(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    stamp = sa.DateTime(timezone=True)
    jobs = sa.Table(
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
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(255)),
        sa.Column("request_hash", sa.String(64)),
        sa.Column("time_limit_s", sa.Integer()),
        sa.Column("method", sa.String(64)),
        sa.UniqueConstraint("owner", "idempotency_key", name="uq_jobs_owner_idempotency_key"),
        sa.Index("ix_jobs_created_at", "created_at"),
        sa.Index("ix_jobs_state_created", "state", "created_at"),
        sa.Index("ix_jobs_owner_state", "owner", "state"),
    )
    tokens = sa.Table(
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
    return jobs, tokens


# columns that releases before that one lacked (the old hand-made check added them on start)
LEGACY_COLUMNS = {
    "owner": "VARCHAR(64) NOT NULL DEFAULT 'local'",
    "idempotency_key": "VARCHAR(255)",
    "request_hash": "VARCHAR(64)",
    "time_limit_s": "INTEGER",
    "method": "VARCHAR(64)",
}


def upgrade() -> None:
    metadata = sa.MetaData()
    tables(metadata)
    metadata.create_all(op.get_bind())


def downgrade() -> None:
    op.drop_table("tokens")
    op.drop_table("jobs")
