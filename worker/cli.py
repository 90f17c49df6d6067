"""`mcs worker` (registered into the `mcs` command by `mcs/app.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("worker")
    def worker_command(
        queues: Annotated[str, typer.Option(help="Comma-separated queues: cpu, gpu.")] = "cpu",
        concurrency: Annotated[int, typer.Option(min=1, help="Worker processes (one per GPU for gpu).")] = 1,
        data_dir: Annotated[Path | None, typer.Option(help="Data dir [env MCS_DATA_DIR].")] = None,
        loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
    ) -> None:
        """Run a Celery worker for the given queues (MCS_BROKER_URL and MCS_DATABASE_URL from the env)."""
        from mcs_common.settings import settings_with_overrides
        from worker.main import run_worker

        settings_with_overrides(data_dir)
        run_worker([q.strip() for q in queues.split(",") if q.strip()], concurrency, loglevel)
