"""The Celery application, configured from `service.settings` (JSON only, late acks, one job at a time).

Importing this module imports no torch: the task module is loaded by the worker (`include`), and the API
only sends task messages by name.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, signals
from kombu import Exchange, Queue

from service.logs import configure_logging, job_id_var
from service.settings import Settings, get_settings
from worker import fs_broker

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


def make_celery(settings: Settings) -> Celery:
    queues = (settings.queue_cpu, settings.queue_gpu)
    # embedded: our filesystem transport (atomic sends, unreadable messages skipped), not Kombu's own
    broker = f"{fs_broker.SCHEME}://" if settings.embedded else settings.effective_broker_url
    app = Celery("mcs", broker=broker, include=["worker.tasks"])
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


app = make_celery(get_settings())
