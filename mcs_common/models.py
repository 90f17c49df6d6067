"""The Job table: the record of truth for a job's state (the broker only carries job ids)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class JobState(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


FINISHED_STATES = (JobState.succeeded, JobState.failed, JobState.cancelled)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_state_created", "state", "created_at"),
        Index("ix_jobs_owner_state", "owner", "state"),
        UniqueConstraint("owner", "idempotency_key", name="uq_jobs_owner_idempotency_key"),
        UniqueConstraint("parent_id", "trial_index", name="uq_jobs_parent_trial"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    state: Mapped[str] = mapped_column(String(16), default=JobState.queued)
    queue: Mapped[str] = mapped_column(String(16), default="cpu")
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    inputs: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)  # role -> path relative to job dir
    progress_stage: Mapped[str | None] = mapped_column(String(64), default=None)
    progress_fraction: Mapped[float] = mapped_column(Float, default=0.0)
    progress_message: Mapped[str | None] = mapped_column(Text, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    artifacts: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, default=None)  # name, size, sha256
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(128), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # who submitted it: a token id, or LOCAL_OWNER when auth is disabled; clients see only their own jobs
    owner: Mapped[str] = mapped_column(String(64), default="local")
    idempotency_key: Mapped[str | None] = mapped_column(String(255), default=None)
    request_hash: Mapped[str | None] = mapped_column(String(64), default=None)  # spec + file digests
    time_limit_s: Mapped[int | None] = mapped_column(Integer, default=None)  # the token's max_job_seconds
    method: Mapped[str | None] = mapped_column(String(64), default=None)  # the spec's step types, for metrics
    # search jobs (worker/search.py): a trial is an ordinary job with its search as parent; `trial` holds
    # its parameters, label and validation split; (parent_id, trial_index) is unique, so a duplicate
    # continuation cannot plan a round twice
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("jobs.id", ondelete="CASCADE"), default=None, index=True
    )
    trial_index: Mapped[int | None] = mapped_column(Integer, default=None)
    trial: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class Token(Base):
    """An API client. Only the SHA-256 of the token is stored; the token itself is shown once."""

    __tablename__ = "tokens"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    max_concurrent_jobs: Mapped[int | None] = mapped_column(Integer, default=None)
    max_upload_bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    max_job_seconds: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


def cancel_children(session: Any, parent_id: uuid.UUID) -> int:
    """A cancelled search takes its trials with it: queued ones are cancelled now (they never run), running
    ones are asked to stop. Used by the API's cancel and by a worker that finds its search cancelled.
    Returns how many children were still active."""
    from sqlalchemy import update

    now = utcnow()
    queued = session.execute(
        update(Job)
        .where(Job.parent_id == parent_id, Job.state == JobState.queued)
        .values(state=JobState.cancelled, cancel_requested=True, finished_at=now, updated_at=now)
    )
    running = session.execute(
        update(Job)
        .where(Job.parent_id == parent_id, Job.state == JobState.running)
        .values(cancel_requested=True, updated_at=now)
    )
    session.commit()
    return int(queued.rowcount or 0) + int(running.rowcount or 0)
