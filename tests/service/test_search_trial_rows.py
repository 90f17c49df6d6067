"""A search's trials are its own (issue 21, item 6): deleting a trial of a search is 409 (it livelocked a
budget search: the next round was numbered from the count of trials, collided with a running one and
planned nothing, forever); rounds are numbered from the recorded trials; a round that can insert nothing
ends the search with its reason. On SQLite and PostgreSQL, without a worker (the broker is recorded)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import save_file
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from svc_helpers import small_state_dict

import mcs_common.broker
import worker.search
from mcs_common.db import init_db, make_engine, make_session_factory
from mcs_common.models import Job, JobState, utcnow
from mcs_common.settings import Settings
from mcs_common.storage import job_dir
from service import jobs
from service.auth import LOCAL_PRINCIPAL
from service.errors import JobConflict

PATHS = ("rules.0.steps.0.sparsity", "rules.0.steps.1.k")
SPEC = {
    "version": 1,
    "model": {"arch": "mlp", "kwargs": {"sizes": [48, 32, 10]}},
    "data": {"builtin": "digits"},
    "rules": [{"select": {"name": "*.weight"}, "steps": [{"type": "prune", "sparsity": 0.5},
                                                          {"type": "quantize", "k": 8}]}],
    "search": {
        "mode": "budget",
        "parameters": {PATHS[0]: {"low": 0.1, "high": 0.9}, PATHS[1]: [4, 8, 16]},
        "max_error_increase": 1.0,
        "max_trials": 8,
    },
}  # fmt: skip
METRICS = {
    "totals": {"ratio": 12.0},
    "evaluation": {"before": {"error": 0.1}, "after": {"error": 0.105}},
    "search_trial": {"validation": {"before": {"error": 0.1}, "after": {"error": 0.104}}},
}


def _factory(settings: Settings) -> sessionmaker[Session]:
    engine = make_engine(settings.effective_database_url)
    init_db(engine)
    return make_session_factory(engine)


def _running_search(settings: Settings, factory: sessionmaker[Session], trials: dict[int, str]) -> uuid.UUID:
    """A budget search waiting between rounds, its model on disk, with trials {index: state}."""
    with factory() as session:
        parent = Job(
            spec=SPEC,
            inputs={"model": "inputs/model.safetensors"},
            state=JobState.running,
            started_at=utcnow(),
            metrics={"search": {"trace": [{"round": 1, "trials": [0, 1], "note": "first"}], "total": 8}},
        )
        session.add(parent)
        session.flush()
        for index, state in trials.items():
            session.add(
                Job(
                    spec={"version": 1},
                    inputs={},
                    state=state,
                    parent_id=parent.id,
                    trial_index=index,
                    trial={"parameters": {PATHS[0]: 0.5, PATHS[1]: 8}},
                    metrics=METRICS if state == "succeeded" else None,
                    started_at=utcnow(),
                    finished_at=utcnow() if state in ("succeeded", "failed") else None,
                )
            )
        session.commit()
        parent_id = parent.id
    inputs = job_dir(settings, parent_id) / "inputs"
    inputs.mkdir(parents=True)
    save_file(small_state_dict(), str(inputs / "model.safetensors"))
    return parent_id


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """What the worker would put on the broker: ("job" | "advance", id)."""
    messages: list[tuple[str, str]] = []
    monkeypatch.setattr(
        mcs_common.broker, "send_job", lambda _app, _s, job_id, *a: messages.append(("job", job_id))
    )
    monkeypatch.setattr(
        mcs_common.broker, "send_advance", lambda _app, _s, job_id, _q: messages.append(("advance", job_id))
    )
    return messages


def _children(factory: sessionmaker[Session], parent: uuid.UUID) -> dict[int, str]:
    with factory() as session:
        rows = session.scalars(select(Job).where(Job.parent_id == parent).order_by(Job.trial_index))
        return {int(row.trial_index or 0): str(row.state) for row in rows}


def test_deleting_a_trial_of_a_running_search_is_409(settings: Settings) -> None:
    factory = _factory(settings)
    parent = _running_search(settings, factory, {0: "succeeded", 1: "running"})
    with factory() as session:
        trial = session.scalar(select(Job.id).where(Job.parent_id == parent, Job.trial_index == 0))
        assert trial is not None
        with pytest.raises(JobConflict, match="is trial #0 of search"):
            jobs.delete_job(session, settings, trial, LOCAL_PRINCIPAL)
    assert _children(factory, parent) == {0: "succeeded", 1: "running"}


def test_a_round_is_numbered_from_the_recorded_trials(
    settings: Settings, sent: list[tuple[str, str]]
) -> None:
    """Trial 0 is gone (deleted before this fix): the next round is #2, not a second #1."""
    settings = settings.model_copy(update={"search_slots": 1})
    factory = _factory(settings)
    parent = _running_search(settings, factory, {1: "succeeded"})
    assert worker.search.advance(str(parent), settings, factory, first=False) == "waiting"
    assert _children(factory, parent) == {1: "succeeded", 2: "queued"}
    new = [job_id for kind, job_id in sent if kind == "job"]
    assert len(new) == 1 and ("advance", str(parent)) not in sent  # the trial was sent; no continuation
    with factory() as session:
        search = session.get(Job, parent)
        assert search is not None and search.metrics["search"]["trace"][-1]["trials"] == [2]


def test_a_round_that_inserts_nothing_ends_the_search_with_its_reason(
    settings: Settings, sent: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another planner inserted this round's trial first (a race) and it already ended: nothing is
    queued, nothing runs, so the search ends instead of sending itself another continuation."""
    settings = settings.model_copy(update={"search_slots": 1})
    factory = _factory(settings)
    parent = _running_search(settings, factory, {0: "failed"})
    original = worker.search.insert_children

    def raced(settings_: Settings, factory_: Any, parent_: Job, first: int, planned: Any) -> Any:
        with factory_() as session:
            session.add(
                Job(spec={}, inputs={}, state=JobState.failed, parent_id=parent_.id, trial_index=first)
            )
            session.commit()
        return original(settings_, factory_, parent_, first, planned)

    monkeypatch.setattr(worker.search, "insert_children", raced)
    assert worker.search.advance(str(parent), settings, factory, first=False) == JobState.failed
    assert ("advance", str(parent)) not in sent
    with factory() as session:
        search = session.get(Job, parent)
        assert search is not None and search.state == JobState.failed
        assert "inserted nothing" in (search.error or ""), search.error


def test_the_round_number_comes_from_the_recorded_trials_not_their_count(tmp_path: Path) -> None:
    assert worker.search.next_trial_index([]) == 0
    rows = [Job(trial_index=1), Job(trial_index=4)]
    assert worker.search.next_trial_index(rows) == 5


def test_the_worker_does_not_check_the_search_again_each_round(
    settings: Settings, sent: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 21, item 4: the parent's spec was checked when it was submitted; a round and a trial's end
    read it without re-validating every trial (350 s of worker CPU for a large search)."""
    import compression_core.methods.search.check as check

    def refuse(spec: Any) -> None:
        raise AssertionError("the search's check ran again in the worker")

    monkeypatch.setattr(check, "check_search", refuse)
    settings = settings.model_copy(update={"search_slots": 1})
    factory = _factory(settings)
    parent = _running_search(settings, factory, {0: "succeeded", 1: "succeeded"})
    worker.search.child_finished(settings, factory, parent)
    assert ("advance", str(parent)) in sent
    assert worker.search.advance(str(parent), settings, factory, first=False) == "waiting"
    assert _children(factory, parent) == {0: "succeeded", 1: "succeeded", 2: "queued"}
