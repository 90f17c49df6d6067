"""Starts a Celery worker for the `cpu` and/or `gpu` queues (`mcs worker`, and the embedded child)."""

from __future__ import annotations

import argparse
import os


def worker_argv(queues: list[str], concurrency: int, loglevel: str = "INFO") -> list[str]:
    """Celery worker arguments: prefork (time limits work, the parent never touches CUDA), no gossip."""
    from mcs_common.settings import get_settings

    settings = get_settings()
    names = ",".join(settings.queue_name(q) for q in queues)
    return [
        "worker",
        f"--queues={names}",
        f"--concurrency={concurrency}",
        "--pool=prefork",
        f"--loglevel={loglevel}",
        "--without-gossip",
        "--without-mingle",
        f"--hostname=mcs-{'-'.join(queues)}-{os.getpid()}@%h",
    ]


def run_worker(queues: list[str], concurrency: int, loglevel: str = "INFO") -> None:
    from mcs_common.logs import configure_logging
    from mcs_common.settings import get_settings
    from worker.app import app
    from worker.parent_watch import watch_parent

    configure_logging(loglevel)  # before Celery starts: its start-up warnings are records too
    get_settings().ensure_dirs()
    watch_parent()  # a child of `mcs serve` stops when its parent is gone
    # stream (issue 14): each job's tensor pool gets cores / concurrency threads (docs/streaming.md)
    from compression_core.streaming.pool import default_workers

    os.environ.setdefault("MCS_STREAM_WORKERS", str(default_workers(concurrency)))
    app.worker_main(worker_argv(queues, concurrency, loglevel))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    parser.add_argument("--queues", default="cpu", help="comma-separated: cpu, gpu")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--loglevel", default="INFO")
    args = parser.parse_args(argv)
    run_worker([q.strip() for q in args.queues.split(",") if q.strip()], args.concurrency, args.loglevel)
