"""`mcs serve` and `mcs worker` (registered into the `mcs` command by `mcs/app.py`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from service.settings import Settings


def _settings(data_dir: Path | None, host: str | None = None, port: int | None = None) -> Settings:
    """Settings from the environment, with command-line values taking precedence (and passed to children)."""
    from service.settings import get_settings

    for key, value in (("MCS_DATA_DIR", data_dir), ("MCS_HOST", host), ("MCS_PORT", port)):
        if value is not None:
            os.environ[key] = str(value)
    get_settings.cache_clear()
    return get_settings()


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        host: Annotated[
            str | None, typer.Option(help="Bind address [env MCS_HOST, default 127.0.0.1].")
        ] = None,
        port: Annotated[int | None, typer.Option(help="Port [env MCS_PORT, default 8000].")] = None,
        data_dir: Annotated[
            Path | None, typer.Option(help="Data dir [env MCS_DATA_DIR, default ./mcs-data].")
        ] = None,
        worker: Annotated[
            bool | None,
            typer.Option("--worker/--no-worker", help="Run a worker child (default: when embedded)."),
        ] = None,
        demo: Annotated[bool, typer.Option(help="Run a tiny example job and print a curl session.")] = False,
        exit_after_demo: Annotated[bool, typer.Option(help="Stop after the demo (for tests).")] = False,
    ) -> None:
        """Run the HTTP API; with no MCS_BROKER_URL, also a worker over the embedded filesystem broker."""
        import logging

        from service.embedded import serve as run

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        settings = _settings(data_dir, host, port)
        code = run(
            settings,
            with_worker=settings.embedded if worker is None else worker,
            demo=demo or exit_after_demo,
            exit_after_demo=exit_after_demo,
        )
        raise typer.Exit(code)

    @app.command("worker")
    def worker_command(
        queues: Annotated[str, typer.Option(help="Comma-separated queues: cpu, gpu.")] = "cpu",
        concurrency: Annotated[int, typer.Option(min=1, help="Worker processes (one per GPU for gpu).")] = 1,
        data_dir: Annotated[Path | None, typer.Option(help="Data dir [env MCS_DATA_DIR].")] = None,
        loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
    ) -> None:
        """Run a Celery worker for the given queues (MCS_BROKER_URL and MCS_DATABASE_URL from the env)."""
        _settings(data_dir)
        from worker.main import run_worker

        run_worker([q.strip() for q in queues.split(",") if q.strip()], concurrency, loglevel)
