"""The one task: run a job by id. Everything else is in `worker.runner` and `compression_core`."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy.orm import Session, sessionmaker

import compression_core.pipeline  # noqa: F401 - imported once in the parent (no CUDA init), shared by forks
from service.db import init_db, make_engine, make_session_factory
from service.settings import get_settings
from worker.celery_app import TASK_RUN_JOB, app
from worker.runner import run_job as run


@lru_cache
def _sessions() -> sessionmaker[Session]:
    """One engine per worker process, made after the fork."""
    engine = make_engine(get_settings().effective_database_url)
    init_db(engine)
    return make_session_factory(engine)


@app.task(name=TASK_RUN_JOB)
def run_job(job_id: str) -> str:
    return run(job_id, get_settings(), _sessions())
