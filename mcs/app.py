"""Composes the `mcs` command from the parts: each layer registers its own commands.

Heavy imports (torch, FastAPI, Celery) happen inside the commands, so `mcs --help` stays fast.
"""

import typer

from client import cli as client_cli
from compression_core import cli as core_cli
from compression_core import train_cli
from service import cli as service_cli
from worker import cli as worker_cli

app = typer.Typer(
    no_args_is_help=True, help="Model compression: library commands and the compression service."
)

for _layer in (core_cli, train_cli, client_cli, service_cli, worker_cli):
    _layer.register(app)
