"""`mcs check MODEL --spec SPEC`: the preflight from the command line (see deploy/preflight.py).

Exit code 0 when the plan can run, 2 when a layer is refused or the upload does not fit (each named).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table


def check(
    model: Annotated[
        Path, typer.Argument(help="state dict: .safetensors or .pth (only names and shapes are read)")
    ],
    spec: Annotated[
        str, typer.Option("--spec", "-s", help="spec JSON file, or the name of a shipped example")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Which layers the spec's structured and int8 plans would prune or quantize, and which they cannot."""
    from compression_core.cli import _friendly_errors, _load_spec_arg, console, err_console
    from compression_core.deploy.preflight import preflight, upload_shapes

    with _friendly_errors():
        report = preflight(_load_spec_arg(spec), upload_shapes(model))
    if as_json:
        console.print_json(json.dumps(report))
    else:
        for table in _tables(report):
            console.print(table)
        console.print(f"checked in {report['seconds']:.1f} s")
    for error in report["errors"]:
        err_console.print(
            f"[red]refused:[/red] {error['field']}: {error['message']}", highlight=False, soft_wrap=True
        )
    if not report["ok"]:
        raise typer.Exit(2)


def _tables(report: dict[str, Any]) -> list[Table]:
    tables = []
    structured = report.get("structured")
    if structured:
        table = Table(title="structured (Torch-Pruning)", header_style="bold")
        for column in ("layer", "channels", "kept", "coupled with"):
            table.add_column(column)
        for layer in structured["pruned"]:
            coupled = ", ".join(layer.get("coupled", [])[:4]) + (
                " ..." if len(layer.get("coupled", [])) > 4 else ""
            )
            table.add_row(layer["layer"], str(layer["channels"]), str(layer.get("kept", "-")), coupled)
        for layer in structured["refused"]:
            table.add_row(
                f"[red]{layer['layer']}[/red]", str(layer["channels"]), "refused", layer.get("reason", "")
            )
        tables.append(table)
        if "params_after" in structured:
            tables.append(
                _pairs({"parameters": f"{structured['params_before']:,} -> {structured['params_after']:,}"})
            )
    int8 = report.get("int8")
    if int8 and "quantized" in int8:
        table = Table(title="int8 (onnxruntime QDQ)", header_style="bold")
        table.add_column("layer")
        table.add_column("int8")
        for name in int8["quantized"]:
            table.add_row(name, "yes")
        for item in int8["float"]:
            table.add_row(item["layer"], f"no: {item['reason']}")
        tables.append(table)
    return tables


def _pairs(values: dict[str, str]) -> Table:
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    for key, value in values.items():
        table.add_row(key, value)
    return table
