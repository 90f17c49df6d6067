"""The broker both sides speak: the Celery configuration (JSON only, late acks, one job at a time) and the
one task name. The API sends `TASK_RUN_JOB` by name with the job id; the worker (`worker.app`) registers
the task under that name. Neither imports the other, and importing this module imports no torch.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from mcs_common.settings import Settings

TASK_RUN_JOB = "mcs.run_job"


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
    app = Celery("mcs", broker=settings.effective_broker_url, include=list(include))
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
