"""Search jobs (issue 11): a trial is an ordinary job with its search as parent.

Revision ID: 0002_search_trials
Revises: 0001_baseline
Create Date: 2026-12-02

`parent_id` (the search, cascading on delete, indexed), `trial_index` (unique per parent, so a duplicate
continuation cannot plan a round twice) and `trial` (its parameters, label and validation split). All
nullable: existing jobs are top-level jobs and keep every value.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_search_trials"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:  # batch: SQLite rebuilds the table, PostgreSQL alters
        batch.add_column(sa.Column("parent_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("trial_index", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("trial", sa.JSON(), nullable=True))
        batch.create_foreign_key("fk_jobs_parent_id", "jobs", ["parent_id"], ["id"], ondelete="CASCADE")
        batch.create_index("ix_jobs_parent_id", ["parent_id"])
        batch.create_unique_constraint("uq_jobs_parent_trial", ["parent_id", "trial_index"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint("uq_jobs_parent_trial", type_="unique")
        batch.drop_index("ix_jobs_parent_id")
        batch.drop_constraint("fk_jobs_parent_id", type_="foreignkey")
        batch.drop_column("trial")
        batch.drop_column("trial_index")
        batch.drop_column("parent_id")
