"""The one task: run a job by id. Everything else is in `worker.runner` and `compression_core`."""

from __future__ import annotations

import logging
from functools import lru_cache

from sqlalchemy.orm import Session, sessionmaker

import compression_core.pipeline  # noqa: F401 - imported once in the parent (no CUDA init), shared by forks
from mcs_common.broker import TASK_RUN_JOB
from mcs_common.db import init_db, make_engine, make_session_factory
from mcs_common.settings import get_settings
from worker.app import app
from worker.runner import run_job as run

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
    state = run(job_id, get_settings(), _sessions())
    log.info("job ended: %s", state, extra={"state": str(state)})
    return state
