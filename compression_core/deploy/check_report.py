"""The tables `mcs check` prints (compression_core/cli.py) from a preflight report (deploy/preflight.py)."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def report_tables(report: dict[str, Any]) -> list[Table]:
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
