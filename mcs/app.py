"""Composes the `mcs` command from the parts: each layer registers its own commands.

Heavy imports (torch, FastAPI, Celery) happen inside the commands, so `mcs --help` stays fast.
"""

import typer

app = typer.Typer(no_args_is_help=True, help="Model compression: library commands and the compression service.")


def _register() -> None:
    from compression_core import cli as core_cli

    core_cli.register(app)
    from compression_core import train_cli

    train_cli.register(app)
    try:
        from client import cli as client_cli
    except ImportError:  # the HTTP client is optional for library-only use
        pass
    else:
        client_cli.register(app)
    try:
        from service import cli as service_cli
    except ImportError:  # the service layer is optional for library-only use
        return
    service_cli.register(app)


_register()
