"""The `mcs` command of the standalone `mcs-client` distribution: only the client commands (submit, jobs,
status, cancel, download). The full product's `mcs` (mcs/app.py) registers the same commands beside the
library and service ones."""

import typer

from client import cli

app = typer.Typer(
    no_args_is_help=True,
    help="Client of the model-compression service: submit jobs, follow them, fetch verified artifacts.",
)
cli.register(app)
