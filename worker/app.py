"""The worker's Celery app: the shared broker configuration (`mcs_common.broker`) plus this worker's task
module and its logging hooks. `celery -A worker.app` (Flower, or a bare `celery worker`) loads it."""

from __future__ import annotations

from typing import Any

from celery import signals

from mcs_common.broker import make_celery
from mcs_common.logs import configure_logging, job_id_var
from mcs_common.settings import get_settings


@signals.setup_logging.connect
def _own_logging(loglevel: int | str | None = None, **_: Any) -> None:
    """Celery's loggers go through ours (JSON by default, MCS_LOG_FORMAT): with a receiver here Celery
    installs no handler of its own, and prefork children inherit this setup."""
    configure_logging(loglevel or "INFO")


@signals.task_prerun.connect
def _enter_job(task_id: str | None = None, args: Any = None, **_: Any) -> None:
    """Every record a task logs (and Celery's own lines about it) carries the job id; the task id is
    the job id (service.dispatch), the first argument too."""
    job_id_var.set(str(args[0]) if args else task_id)


@signals.task_postrun.connect
def _leave_job(**_: Any) -> None:
    job_id_var.set(None)


app = make_celery(get_settings(), include=("worker.tasks",))
