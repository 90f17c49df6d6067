"""`mcs serve` and `mcs token` (registered into the `mcs` command by `mcs/app.py`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from mcs_common.settings import Settings


def _settings(data_dir: Path | None, host: str | None = None, port: int | None = None) -> Settings:
    from mcs_common.settings import settings_with_overrides

    return settings_with_overrides(data_dir, host, port)


def register(app: typer.Typer) -> None:
    register_tokens(app)

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
        insecure: Annotated[
            bool, typer.Option(help="Allow auth disabled on a non-loopback address [env MCS_ALLOW_INSECURE].")
        ] = False,
    ) -> None:
        """Run the HTTP API; with no MCS_BROKER_URL, also a worker over the embedded filesystem broker.

        Auth: bearer tokens (`mcs token create`). With MCS_AUTH unset and a loopback address, auth is
        disabled for this one-person setup, and the log and /healthz say so."""
        from mcs_common.logs import configure_logging
        from mcs_common.settings import is_loopback
        from service.embedded import serve as run

        configure_logging()  # JSON lines unless on a terminal (MCS_LOG_FORMAT=json|text)
        if insecure:
            os.environ["MCS_ALLOW_INSECURE"] = "1"
        settings = _settings(data_dir, host, port)
        if "MCS_AUTH" not in os.environ and is_loopback(settings.host):
            os.environ["MCS_AUTH"] = "disabled"
            settings = _settings(None)
        try:
            settings.check_bind()
        except ValueError as exc:
            typer.echo(f"mcs serve: {exc}", err=True)
            raise typer.Exit(2) from None
        code = run(
            settings,
            with_worker=settings.embedded if worker is None else worker,
            demo=demo or exit_after_demo,
            exit_after_demo=exit_after_demo,
        )
        raise typer.Exit(code)


DataDir = Annotated[Path | None, typer.Option(help="Data dir [env MCS_DATA_DIR].")]


def _token_session(data_dir: Path | None) -> Any:
    from mcs_common.db import init_db, make_engine, make_session_factory

    settings = _settings(data_dir)
    settings.ensure_dirs()
    engine = make_engine(settings.effective_database_url)
    init_db(engine)
    return make_session_factory(engine)()


def register_tokens(app: typer.Typer) -> None:
    tokens = typer.Typer(no_args_is_help=True, help="API tokens: create, list, revoke (MCS_DATABASE_URL).")
    app.add_typer(tokens, name="token")

    @tokens.command("create")
    def create(
        name: Annotated[str, typer.Option(help="A unique name, e.g. ci-main.")],
        admin: Annotated[bool, typer.Option(help="Sees and manages every client's jobs.")] = False,
        max_concurrent_jobs: Annotated[int | None, typer.Option(min=1, help="Queued + running jobs.")] = None,
        max_upload_bytes: Annotated[int | None, typer.Option(min=1, help="Bytes of one upload.")] = None,
        max_job_seconds: Annotated[int | None, typer.Option(min=1, help="Run time of one job.")] = None,
        data_dir: DataDir = None,
    ) -> None:
        """Create a token and print it once (only its SHA-256 is stored)."""
        from service.auth import create_token

        with _token_session(data_dir) as session:
            try:
                row, secret = create_token(
                    session,
                    name,
                    admin=admin,
                    max_concurrent_jobs=max_concurrent_jobs,
                    max_upload_bytes=max_upload_bytes,
                    max_job_seconds=max_job_seconds,
                )
            except ValueError as exc:
                typer.echo(f"mcs token create: {exc}", err=True)
                raise typer.Exit(2) from None
        typer.echo(f"created token {row.name!r} (id {row.id}); it is shown only this once:", err=True)
        typer.echo(secret)

    @tokens.command("list")
    def list_(data_dir: DataDir = None) -> None:
        """Names, ids, roles, limits and state of every token (never the tokens themselves)."""
        from service.auth import list_tokens

        with _token_session(data_dir) as session:
            for row in list_tokens(session):
                limits = ", ".join(
                    f"{label}={value}"
                    for label, value in (
                        ("max_concurrent_jobs", row.max_concurrent_jobs),
                        ("max_upload_bytes", row.max_upload_bytes),
                        ("max_job_seconds", row.max_job_seconds),
                    )
                    if value is not None
                )
                state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "active"
                role = "admin" if row.admin else "client"
                typer.echo(f"{row.id}  {row.name:<24} {role:<6} {state:<24} {limits or 'no limits'}")

    @tokens.command("revoke")
    def revoke(
        name_or_id: Annotated[str, typer.Argument(help="Token name or id.")], data_dir: DataDir = None
    ) -> None:
        """Revoke a token: its next request answers 401."""
        from service.auth import revoke_token

        with _token_session(data_dir) as session:
            try:
                row = revoke_token(session, name_or_id)
            except LookupError as exc:
                typer.echo(f"mcs token revoke: {exc}", err=True)
                raise typer.Exit(1) from None
        typer.echo(f"revoked token {row.name!r} ({row.id})")
