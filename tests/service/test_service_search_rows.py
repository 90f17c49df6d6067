"""The search's rows on SQLite and PostgreSQL, without a worker: claiming a round, cancelling a search with
its trials, resuming a search whose continuation was lost, deleting a search with its trials."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from mcs_common.db import init_db, make_engine, make_session_factory
from mcs_common.models import Job, JobState, utcnow
from mcs_common.settings import Settings
from service import jobs, presenters
from service.auth import LOCAL_PRINCIPAL
from worker.search import claim_round, release

SEARCH = {"version": 1, "search": {"mode": "grid", "parameters": {"rules.0.steps.0.sparsity": [0.5]}}}


class Recorder:
    def __init__(self) -> None:
        self.advanced: list[uuid.UUID] = []
        self.revoked: list[uuid.UUID] = []

    def send_advance(self, job_id: uuid.UUID, queue: str) -> None:
        self.advanced.append(job_id)

    def revoke(self, job_id: uuid.UUID) -> None:
        self.revoked.append(job_id)


def _factory(settings: Settings) -> sessionmaker[Session]:
    engine = make_engine(settings.effective_database_url)
    init_db(engine)
    return make_session_factory(engine)


def _search(factory: sessionmaker[Session], children: list[str]) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """A search waiting between rounds (running, no lease owner) with children in the given states."""
    with factory() as session:
        parent = Job(spec=SEARCH, inputs={}, state=JobState.running, started_at=utcnow())
        session.add(parent)
        session.flush()
        rows = [
            Job(
                spec={"version": 1},
                inputs={},
                state=state,
                parent_id=parent.id,
                trial_index=i,
                trial={"parameters": {}},
            )
            for i, state in enumerate(children)
        ]
        session.add_all(rows)
        session.commit()
        return parent.id, [row.id for row in rows]


def _states(factory: sessionmaker[Session], ids: list[uuid.UUID]) -> list[tuple[str, bool]]:
    with factory() as session:
        return [
            (str(j.state), bool(j.cancel_requested))
            for j in (session.get(Job, i) for i in ids)
            if j is not None
        ]


def test_a_round_is_claimed_once_and_never_while_cancelled(settings: Settings) -> None:
    factory = _factory(settings)
    parent, _ = _search(factory, ["succeeded"])
    first = claim_round(factory, parent, "a", 30)
    assert first is not None and claim_round(factory, parent, "b", 30) is None
    assert release(first) and not first.renew()  # waiting again: held by nobody
    again = claim_round(factory, parent, "b", 30)
    assert again is not None and release(again)
    with factory() as session:
        session.execute(update(Job).where(Job.id == parent).values(cancel_requested=True))
        session.commit()
    assert claim_round(factory, parent, "c", 30) is None


def test_cancelling_a_waiting_search_cancels_it_and_its_trials(settings: Settings) -> None:
    factory = _factory(settings)
    parent, children = _search(factory, ["succeeded", "running", "queued", "queued"])
    with factory() as session:
        job = jobs.cancel_job(session, Recorder(), parent, LOCAL_PRINCIPAL)  # type: ignore[arg-type]
        assert job.state == JobState.cancelled
        view = presenters.present(settings, job, jobs.children_of(session, job))
    assert view.children is not None and [c.index for c in view.children] == [0, 1, 2, 3]
    assert _states(factory, children) == [
        ("succeeded", False),
        ("running", True),
        ("cancelled", True),
        ("cancelled", True),
    ]


def test_a_search_whose_trials_all_ended_is_advanced_by_the_reaper(settings: Settings) -> None:
    factory = _factory(settings)
    stuck, _ = _search(factory, ["succeeded", "failed"])
    busy, _ = _search(factory, ["succeeded", "running"])
    old = utcnow() - timedelta(seconds=settings.requeue_after_s + 5)
    with factory() as session:
        session.execute(update(Job).where(Job.id.in_([stuck, busy])).values(updated_at=old))
        session.commit()
        recorder: Any = Recorder()
        assert jobs.resume_searches(session, settings, recorder) == 1
        assert recorder.advanced == [stuck]
        assert jobs.resume_searches(session, settings, recorder) == 0  # touched: not again at once


def test_deleting_a_finished_search_deletes_its_trials(settings: Settings) -> None:
    factory = _factory(settings)
    parent, children = _search(factory, ["succeeded", "cancelled"])
    with factory() as session:
        session.execute(update(Job).where(Job.id == parent).values(state=JobState.succeeded))
        session.commit()
        listed, total = jobs.list_jobs(session, LOCAL_PRINCIPAL, state=None, limit=10, offset=0)
        assert [j.id for j in listed] == [parent] and total == 1  # trials are listed in their search
        jobs.delete_job(session, settings, parent, LOCAL_PRINCIPAL)
    assert _states(factory, [parent, *children]) == []


def test_a_trial_whose_worker_died_for_good_fails_and_advances_its_search(settings: Settings) -> None:
    """The reaper's usual rules: requeued while attempts remain; then failed, a row of the table, and the
    search is asked for its next round (a lost trial, not a lost search)."""
    factory = _factory(settings)
    parent, (child,) = _search(factory, ["running"])
    with factory() as session:
        session.execute(
            update(Job)
            .where(Job.id == child)
            .values(
                lease_owner="gone",
                lease_expires_at=utcnow() - timedelta(seconds=1),
                attempts=settings.max_attempts,
            )
        )
        session.commit()
        recorder: Any = Recorder()
        recorder.send = lambda *args: None
        assert jobs.reap_expired(session, settings, recorder) == 1
        assert recorder.advanced == [parent]
    assert _states(factory, [child, parent]) == [("failed", False), ("running", False)]
