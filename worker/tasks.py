"""The tasks: run a job by id, and advance a search. Everything else is in `worker.runner`, `worker.search`
and `compression_core`."""

from __future__ import annotations

import logging
import uuid
from functools import lru_cache

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

import compression_core.job.pipeline  # noqa: F401 - imported once in the parent (no CUDA init), shared by forks
from mcs_common.broker import TASK_ADVANCE_SEARCH, TASK_RUN_JOB
from mcs_common.db import init_db, make_engine, make_session_factory
from mcs_common.models import Job
from mcs_common.settings import get_settings
from worker.app import app
from worker.runner import run_job as run
from worker.search import advance, child_finished, is_search

log = logging.getLogger(__name__)


@lru_cache
def _sessions() -> sessionmaker[Session]:
    """One engine per worker process, made after the fork."""
    engine = make_engine(get_settings().effective_database_url)
    init_db(engine)
    return make_session_factory(engine)


@app.task(name=TASK_RUN_JOB)
def run_job(job_id: str) -> str:
    log.info("job started")  # the job id is on every record (worker.app sets it per task)
    with _sessions()() as session:
        row = session.execute(
            select(Job.spec, Job.parent_id).where(Job.id == uuid.UUID(job_id))
        ).one_or_none()
    spec, parent_id = row if row is not None else (None, None)
    if spec is not None and is_search(spec):  # a search plans its trials as child jobs and returns
        state = advance(job_id, get_settings(), _sessions(), first=True)
    else:
        state = run(job_id, get_settings(), _sessions())
        if state == "skipped" and parent_id is not None:  # e.g. failed after max_attempts at the claim
            child_finished(get_settings(), _sessions(), parent_id)
    log.info("job ended: %s", state, extra={"state": str(state)})
    return state


@app.task(name=TASK_ADVANCE_SEARCH)
def advance_search(job_id: str) -> str:
    """A search's next round (sent when its last running trial ended, or by the API's reaper)."""
    state = advance(job_id, get_settings(), _sessions(), first=False)
    log.info("search step: %s", state, extra={"state": str(state)})
    return state
