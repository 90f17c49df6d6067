"""The broker both sides speak: the Celery configuration (JSON only, late acks, one job at a time) and the
one task name. The API sends `TASK_RUN_JOB` by name with the job id; the worker (`worker.app`) registers
the task under that name. Neither imports the other, and importing this module imports no torch.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from mcs_common import fs_broker
from mcs_common.settings import Settings

TASK_RUN_JOB = "mcs.run_job"
TASK_ADVANCE_SEARCH = "mcs.advance_search"  # a search's next round, once its trials finished


def broker_transport_options(settings: Settings) -> dict[str, Any]:
    if settings.embedded:
        folder = str(settings.broker_dir / "messages")
        return {
            "data_folder_in": folder,
            "data_folder_out": folder,
            "control_folder": str(settings.broker_dir / "control"),
            "store_processed": False,
            "polling_interval": 0.05,  # a directory listing: cheap, and it bounds queue latency
        }
    # A message unacked for longer than this is redelivered: it must outlast the longest job.
    return {"visibility_timeout": settings.hard_time_limit_s + 600}


def make_celery(settings: Settings, include: tuple[str, ...] = ()) -> Celery:
    """A Celery app on the configured broker; `include` names the task modules a worker loads (the API,
    which only sends by name, loads none)."""
    queues = (settings.queue_cpu, settings.queue_gpu)
    # embedded: our filesystem transport (atomic sends, unreadable messages skipped), not Kombu's own
    broker = f"{fs_broker.SCHEME}://" if settings.embedded else settings.effective_broker_url
    app = Celery("mcs", broker=broker, include=list(include))
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.soft_time_limit_s,
        task_time_limit=settings.hard_time_limit_s,
        broker_transport_options=broker_transport_options(settings),
        broker_connection_retry_on_startup=True,
        # each queue its own direct exchange: without it Celery routes every queue through the default one
        task_queues=tuple(Queue(name, Exchange(name, type="direct"), routing_key=name) for name in queues),
        task_default_queue=settings.queue_cpu,
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # task events for Flower (a fanout nobody stores); not on the embedded filesystem broker,
        # where each event would be a file
        worker_send_task_events=not settings.embedded,
        task_send_sent_event=not settings.embedded,
    )
    return app


def send_job(
    celery: Celery, settings: Settings, job_id: str, queue: str, time_limit_s: int | None = None
) -> None:
    """Queue a job; the task id is the job id, so a revoke names the job. `time_limit_s` (a token's
    max_job_seconds) tightens the server's soft time limit for this job. The API sends jobs, and a
    search's worker sends its trials."""
    options: dict[str, int] = {}
    if time_limit_s is not None:
        soft = min(time_limit_s, settings.soft_time_limit_s)
        hard = settings.hard_time_limit_s - settings.soft_time_limit_s
        options = {"soft_time_limit": soft, "time_limit": soft + max(hard, 30)}
    celery.send_task(
        TASK_RUN_JOB, args=[str(job_id)], task_id=str(job_id), queue=settings.queue_name(queue), **options
    )


def advance_task_id(job_id: str) -> str:
    """`<search id>-advance-<8 hex>`: unique per message, and a name the embedded broker's message files
    carry (letters, digits, dashes), so a lost continuation is seen like a lost job (fs_broker.search_of)."""
    import uuid

    return f"{job_id}{fs_broker.ADVANCE_TAG}{uuid.uuid4().hex[:8]}"


def send_advance(celery: Celery, settings: Settings, job_id: str, queue: str) -> None:
    """Ask for a search's next round. Duplicates are harmless: the round is claimed through the job row."""
    celery.send_task(
        TASK_ADVANCE_SEARCH,
        args=[str(job_id)],
        task_id=advance_task_id(str(job_id)),
        queue=settings.queue_name(queue),
    )
