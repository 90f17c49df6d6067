"""Hands job ids to the broker. Only the id travels; the database stays the record of truth.

The task is sent by its name (`mcs_common.broker.TASK_RUN_JOB`): the service never imports the worker.
"""

from __future__ import annotations

import logging
import uuid

from celery import Celery

from mcs_common.broker import make_celery, send_advance, send_job
from mcs_common.settings import Settings

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(self, settings: Settings, celery: Celery | None = None) -> None:
        self.settings = settings
        self.celery = celery or make_celery(settings)

    def send(self, job_id: uuid.UUID, queue: str, time_limit_s: int | None = None) -> None:
        """Queue a job; the task id is the job id, so a revoke names the job. `time_limit_s` (a token's
        max_job_seconds) tightens the server's soft time limit for this job."""
        send_job(self.celery, self.settings, str(job_id), queue, time_limit_s)

    def send_advance(self, job_id: uuid.UUID, queue: str) -> None:
        """A search's next round (its trials finished, or a lost continuation found by the reaper)."""
        send_advance(self.celery, self.settings, str(job_id), queue)

    def revoke(self, job_id: uuid.UUID) -> None:
        """Best effort: workers also re-check the job's state before running it."""
        try:
            self.celery.control.revoke(str(job_id))
        except Exception:  # noqa: BLE001 - a broadcast failure must not fail the cancel
            log.warning("could not broadcast revoke for job %s", job_id, exc_info=True)

    def ping(self) -> None:
        """Raise unless the broker accepts a connection now."""
        if self.settings.embedded:
            for sub in ("messages", "control"):
                folder = self.settings.broker_dir / sub
                if not folder.is_dir():
                    raise OSError(f"broker folder {folder} is missing")
            return
        with self.celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)
            connection.default_channel.client.ping()
