"""The worker's side of the job row: take a lease, renew it (`Heartbeat`), report progress, finish. Every
write is a conditional UPDATE on the lease owner, so a duplicate or stale worker can never overwrite a job."""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from mcs_common.models import Job, JobState, utcnow

log = logging.getLogger(__name__)


@dataclass
class Lease:
    factory: sessionmaker[Session]
    job_id: uuid.UUID
    owner: str
    seconds: float

    def _update(self, **values: Any) -> bool:
        with self.factory() as session:
            result = session.execute(
                update(Job)
                .where(Job.id == self.job_id, Job.state == JobState.running, Job.lease_owner == self.owner)
                .values(updated_at=utcnow(), **values)
            )
            session.commit()
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def renew(self) -> bool:
        return self._update(lease_expires_at=utcnow() + timedelta(seconds=self.seconds))

    def progress(self, stage: str, fraction: float, message: str) -> bool:
        fraction = min(1.0, max(0.0, fraction))
        return self._update(progress_stage=stage[:64], progress_fraction=fraction, progress_message=message)

    def should_stop(self) -> bool:
        """True when a cancel was asked for, or when this worker no longer holds the job."""
        with self.factory() as session:
            row = session.execute(
                select(Job.cancel_requested, Job.lease_owner).where(Job.id == self.job_id)
            ).one_or_none()
        return row is None or bool(row[0]) or row[1] != self.owner

    def finish(self, state: JobState, **values: Any) -> bool:
        return self._update(
            state=state, finished_at=utcnow(), lease_owner=None, lease_expires_at=None, **values
        )


def take_lease(
    factory: sessionmaker[Session],
    job_id: uuid.UUID,
    owner: str,
    seconds: float,
    max_attempts: int | None = None,
) -> Lease | None:
    """Atomically claim a queued job (or one whose previous worker's lease ran out); None if another
    delivery already holds it or it is finished/cancelled, so a duplicate delivery exits at once.

    A job already delivered `max_attempts` times is not run again: it ends `failed` with the reason (a
    job that kills its worker each time must not loop forever)."""
    now = utcnow()
    with factory() as session:
        claimable = or_(
            and_(Job.state == JobState.queued, Job.cancel_requested.is_(False)),
            and_(Job.state == JobState.running, Job.lease_expires_at < now),
        )
        if max_attempts is not None:
            exhausted = session.execute(
                update(Job)
                .where(Job.id == job_id, claimable, Job.attempts >= max_attempts)
                .values(
                    state=JobState.failed,
                    finished_at=now,
                    updated_at=now,
                    lease_owner=None,
                    lease_expires_at=None,
                    error=f"the job was delivered {max_attempts} times and its worker was lost each time "
                    "(killed, out of memory or crashed); giving up",
                )
            )
            session.commit()
            if exhausted.rowcount:  # type: ignore[attr-defined]
                return None
        job = session.get(Job, job_id)
        started = job.started_at if job is not None and job.started_at is not None else now
        result = session.execute(
            update(Job)
            .where(Job.id == job_id, claimable)
            .values(
                state=JobState.running,
                lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=seconds),
                attempts=Job.attempts + 1,
                started_at=started,
                updated_at=now,
                error=None,
            )
        )
        session.commit()
    return Lease(factory, job_id, owner, seconds) if result.rowcount else None  # type: ignore[attr-defined]


class Heartbeat(threading.Thread):
    """Renews the lease while the job runs, so a reaper can tell a live worker from a vanished one."""

    def __init__(self, lease: Lease) -> None:
        super().__init__(name=f"lease-{lease.job_id}", daemon=True)
        self.lease = lease
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.lease.seconds / 3):
            try:
                if not self.lease.renew():
                    return
            except Exception:  # noqa: BLE001 - a failed renewal is retried at the next beat
                log.warning("lease renewal failed for job %s", self.lease.job_id, exc_info=True)

    def stop(self) -> None:
        self.stopped.set()
