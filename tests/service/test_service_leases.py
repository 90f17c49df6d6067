"""Leases and the reaper, on SQLite and PostgreSQL: a job has at most one live worker, and a vanished
worker's job is requeued, then failed after max_attempts."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from mcs_common.db import init_db, make_engine, make_session_factory
from mcs_common.models import Job, JobState, utcnow
from mcs_common.settings import Settings
from service import jobs
from service.auth import LOCAL_PRINCIPAL
from service.dispatch import Dispatcher
from worker.store import take_lease


def _factory(settings: Settings) -> sessionmaker[Session]:
    engine = make_engine(settings.effective_database_url)
    init_db(engine)
    return make_session_factory(engine)


def _queued_job(factory: sessionmaker[Session]) -> uuid.UUID:
    with factory() as session:
        job = Job(spec={"version": 1}, inputs={"model": "inputs/model.safetensors"})
        session.add(job)
        session.commit()
        return job.id


def _expire(factory: sessionmaker[Session], job_id: uuid.UUID) -> None:
    with factory() as session:
        session.execute(
            update(Job).where(Job.id == job_id).values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
        session.commit()


def test_one_lease_per_job_and_only_its_owner_writes(settings: Settings) -> None:
    factory = _factory(settings)
    job_id = _queued_job(factory)
    first = take_lease(factory, job_id, "a", 30)
    assert first is not None
    assert take_lease(factory, job_id, "b", 30) is None  # duplicate delivery
    assert first.progress("prune", 0.5, "half")
    assert first.renew() and not first.should_stop()
    with factory() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert (job.state, job.lease_owner, job.attempts, job.progress_stage) == ("running", "a", 1, "prune")
        assert job.lease_expires_at is not None and job.lease_expires_at > utcnow() + timedelta(seconds=20)
    _expire(factory, job_id)
    second = take_lease(factory, job_id, "b", 30)  # the first worker vanished
    assert second is not None
    assert first.should_stop() and not first.progress("x", 0.9, "") and not first.finish(JobState.succeeded)
    assert second.finish(JobState.succeeded, metrics={"ok": 1})
    with factory() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.state == "succeeded" and job.attempts == 2 and job.lease_owner is None
    assert take_lease(factory, job_id, "c", 30) is None  # finished jobs are never taken again


def test_cancel_requested_is_seen_by_the_worker(settings: Settings) -> None:
    factory = _factory(settings)
    job_id = _queued_job(factory)
    lease = take_lease(factory, job_id, "a", 30)
    assert lease is not None
    with factory() as session:
        job = jobs.cancel_job(session, Dispatcher(settings), job_id, LOCAL_PRINCIPAL)
        assert job.state == "running" and job.cancel_requested
    assert lease.should_stop()


def test_reaper_requeues_then_fails_after_max_attempts(settings: Settings) -> None:
    settings = settings.model_copy(update={"max_attempts": 2})
    factory, dispatcher = _factory(settings), Dispatcher(settings)
    job_id = _queued_job(factory)
    live = _queued_job(factory)
    assert take_lease(factory, live, "healthy", 30) is not None
    for attempt in (1, 2):
        assert take_lease(factory, job_id, f"w{attempt}", 30) is not None
        _expire(factory, job_id)
        with factory() as session:
            assert jobs.reap_expired(session, settings, dispatcher) == 1
            job = session.get(Job, job_id)
            assert job is not None
            expected = "queued" if attempt == 1 else "failed"
            assert job.state == expected and job.lease_owner is None
    assert "stopped responding 2 times" in (job.error or "")
    with factory() as session:
        healthy = session.get(Job, live)
        assert healthy is not None and healthy.state == "running" and healthy.lease_owner == "healthy"


def test_a_redelivery_past_max_attempts_fails_the_job_with_the_reason(settings: Settings) -> None:
    """The broker may redeliver a job whose worker died (acks_late) before any reaper pass: the lease
    itself refuses to start attempt max_attempts + 1, so a job that kills its worker cannot loop."""
    factory = _factory(settings)
    job_id = _queued_job(factory)
    for attempt in (1, 2):
        assert take_lease(factory, job_id, f"w{attempt}", 30, max_attempts=2) is not None
        _expire(factory, job_id)
    assert take_lease(factory, job_id, "w3", 30, max_attempts=2) is None
    with factory() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.state == "failed" and job.attempts == 2 and job.lease_owner is None
        assert "delivered 2 times" in (job.error or "") and job.finished_at is not None


def test_jobs_queued_too_long_are_sent_again_once_per_period(settings: Settings) -> None:
    settings = settings.model_copy(update={"requeue_after_s": 60})
    factory = _factory(settings)
    sent: list[uuid.UUID] = []

    class Recorder(Dispatcher):
        def send(self, job_id: uuid.UUID, queue: str, time_limit_s: int | None = None) -> None:
            sent.append(job_id)

    old, fresh = _queued_job(factory), _queued_job(factory)
    with factory() as session:
        session.execute(update(Job).where(Job.id == old).values(updated_at=utcnow() - timedelta(seconds=120)))
        session.commit()
        recorder = Recorder(settings)
        assert jobs.requeue_stale(session, settings, recorder) == 1
        assert jobs.requeue_stale(session, settings, recorder) == 0  # touched: not again until 60 s pass
    assert sent == [old] and fresh not in sent
