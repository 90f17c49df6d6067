"""`mcs compress`, `mcs decode`, `mcs inspect`: the library from the command line.

Errors the library raises on purpose become one red line and exit code 2 (bad input or spec) or 1
(anything else the library refuses, e.g. a cancelled job or an unusable device); no traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)
if not console.is_terminal:  # pipes, CI logs, tests: do not crop the per-layer table to 80 columns
    console.width = 160


@contextmanager
def _friendly_errors() -> Iterator[None]:
    from compression_core.errors import CompressionError, InputError, SpecError

    try:
        yield
    except (InputError, SpecError) as error:
        err_console.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except CompressionError as error:
        err_console.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _load_spec_arg(spec: str) -> Any:
    from compression_core.spec.parse import example_names, example_spec, load_spec

    if not Path(spec).exists() and spec.removeprefix("example:") in example_names():
        return example_spec(spec.removeprefix("example:"))
    return load_spec(spec)


def _layer_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    table = Table(title=title, show_lines=False, header_style="bold")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i < 3 else "right", no_wrap=i == 0)
    for row in rows:
        table.add_row(*row)
    return table


def _headline(metrics: dict[str, Any]) -> Table:
    totals = metrics["totals"]
    files = metrics.get("files", {})
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(justify="right")

    def fmt(value: Any, pattern: str) -> str:
        return "-" if value is None else pattern.format(value)

    table.add_row("parameters", f"{totals['params']:,}")
    table.add_row("kept (stored) entries", f"{totals['kept']:,}")
    table.add_row("compression ratio (stored bits, whole .bin)", fmt(totals.get("ratio"), "{:.2f}x"))
    table.add_row("bits per weight", fmt(totals.get("bits_per_weight"), "{:.3f}"))
    table.add_row("LC-style ratio (weights only)", fmt(totals.get("lc_ratio"), "{:.2f}x"))
    table.add_row("LC compressed parameters", f"{totals['lc_params']:,}")
    table.add_row("relative error of compressed tensors", f"{totals['rel_error_compressed']:.4f}")
    if "entropy_bits" in totals:
        table.add_row(
            "Huffman vs entropy bound (coded streams)",
            f"{totals['huffman_bits_of_entropy_coded_streams']:,} vs {totals['entropy_bits']:,.0f} bits",
        )
    from compression_core.report.headline import headline

    h = headline(metrics)
    where = f" ({h.eval_samples:,} samples, {h.fidelity_split} split)" if h.eval_samples else ""
    if h.error_before is not None and h.error_after is not None:
        table.add_row("error before -> after", f"{100 * h.error_before:.2f}% -> {100 * h.error_after:.2f}%")
    if h.agreement_after is not None:
        table.add_row("top-1 agreement with the upload", f"{100 * h.agreement_after:.2f}%{where}")
    if h.output_error_after is not None:
        table.add_row("relative output error vs the upload", f"{h.output_error_after:.4f}{where}")
    for key, label in (
        ("input_bytes", "input file"),
        ("model_pth_bytes", "model.pth"),
        ("model_bin_bytes", "model.bin"),
    ):
        if key in files:
            table.add_row(label, f"{files[key]:,} bytes")
    return table


def compress(
    model: Annotated[
        Path,
        typer.Argument(
            help="state dict: .safetensors, .pth, .pt or .bin (torch), or a sharded checkpoint: its "
            "model.safetensors.index.json or the folder holding it"
        ),
    ],
    spec: Annotated[
        str, typer.Option("--spec", "-s", help="spec JSON file, or the name of a shipped example")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="output folder for model.bin, model.pth, metrics.json")
    ],
    device: Annotated[str, typer.Option(help="where the methods run: cpu or cuda")] = "cpu",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar or table")] = False,
    workers: Annotated[
        int | None,
        typer.Option(help="threads compressing tensors at once (data-free specs); default: the cores"),
    ] = None,
) -> None:
    """Compress a model's weights as a spec says; writes model.bin, model.pth and metrics.json."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from compression_core.job.pipeline import Progress as JobProgress
    from compression_core.job.pipeline import compress_file
    from compression_core.metrics import TABLE_COLUMNS, table_rows

    with _friendly_errors():
        parsed = _load_spec_arg(spec)
        bar = Progress(
            TextColumn("{task.fields[stage]:<16}"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            TextColumn("{task.fields[what]}"),
            TimeElapsedColumn(),
            console=err_console,
            disable=quiet,
            transient=True,
        )
        with bar:
            task = bar.add_task("compress", total=1.0, stage="start", what="")

            def on_progress(p: JobProgress) -> None:
                bar.update(task, completed=p.fraction, stage=p.stage, what=p.message)

            metrics = compress_file(model, parsed, out, progress=on_progress, device=device, workers=workers)
    if not quiet:
        console.print(_layer_table(f"{model.name} -> {out}", TABLE_COLUMNS, table_rows(metrics["tensors"])))
    console.print(_headline(metrics))


def decode(
    source: Annotated[Path, typer.Argument(help="a model.bin written by `mcs compress`")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output state dict (.pth or .safetensors)")],
) -> None:
    """Decode a .bin into a dense state dict (identical to the model.pth written beside it)."""
    from compression_core.format import decode_state_dict
    from compression_core.io import save_state_dict

    with _friendly_errors():
        state_dict = decode_state_dict(_read_bin(source))
        save_state_dict(state_dict, out)
    console.print(f"wrote {out} ({len(state_dict)} tensors)")


def inspect(
    source: Annotated[Path, typer.Argument(help="a model.bin written by `mcs compress`")],
) -> None:
    """Show what a .bin holds: per tensor the method, codebook size, rank, kept weights and bits."""
    from compression_core.format import decode_records, encode_records
    from compression_core.metrics import TABLE_COLUMNS, add_stream_stats, record_summary, table_rows

    with _friendly_errors():
        data = _read_bin(source)
        records, metadata = decode_records(data)
        streams = encode_records(records, metadata=metadata).streams
    entries = []
    for record in records:
        entry = record_summary(record)
        add_stream_stats(entry, streams.get(record.name, []))
        entries.append(entry)
    columns = TABLE_COLUMNS[:-1]
    rows = [row[:-1] for row in table_rows(entries)]
    console.print(_layer_table(f"{source.name}: {len(records)} tensors, {len(data):,} bytes", columns, rows))
    params = sum(e["params"] for e in entries)
    console.print(f"{params:,} parameters, {8 * len(data) / max(params, 1):.3f} bits per weight (whole file)")
    if metadata.get("source"):
        console.print(f"compressed from {metadata['source']} by {metadata.get('library', '?')}")


def _read_bin(path: Path) -> bytes:
    from compression_core.errors import InputError

    try:
        return path.read_bytes()
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror or error}") from None


def check(
    model: Annotated[
        Path,
        typer.Argument(
            help="state dict: .safetensors or .pth, a sharded checkpoint (its index or folder), or an .onnx "
            "graph; only names and shapes are read, after the same metadata checks as an upload"
        ),
    ],
    spec: Annotated[
        str, typer.Option("--spec", "-s", help="spec JSON file, or the name of a shipped example")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    data: Annotated[
        Path | None,
        typer.Option(
            help="the data file the job would upload (.npz/.safetensors); only its headers are read"
        ),
    ] = None,
    teacher: Annotated[
        Path | None,
        typer.Option(help="the `teacher` file a `distill` job would upload (a state dict or a .onnx graph)"),
    ] = None,
) -> None:
    """The job's plan (which stages run, streamed or in memory) and which layers the spec's structured and
    int8 plans would prune or quantize, and which they cannot (exit code 2 when a layer is refused or the
    file does not fit; docs/deployable-models.md, docs/sources.md). First the checks POST /jobs makes
    (compression_core/job/admission.py): the architecture, the state dict and the data against the model."""
    import json

    from compression_core.deploy.check_report import report_tables
    from compression_core.deploy.preflight import preflight
    from compression_core.job.admission import admission_problems, as_dicts, carries_graph
    from compression_core.job.plan import plan_job
    from compression_core.sources import open_source

    with _friendly_errors():
        parsed = _load_spec_arg(spec)
        with open_source(model, parsed.model) as source:
            shapes = source.shapes()  # the upload's metadata checks first, as the API makes them
            refused = admission_problems(parsed, model, data, {"teacher": teacher} if teacher else None)
            if refused:
                report: dict[str, Any] = {"ok": False, "errors": as_dicts(refused)}
                if as_json:
                    console.print_json(json.dumps(report))
                for problem in refused:
                    err_console.print(
                        f"[red]refused:[/red] {problem.field}: {problem.message}", soft_wrap=True
                    )
                raise typer.Exit(2)
            plan = plan_job(parsed, source)
            graph = source if carries_graph(model, parsed.model) else None  # an ONNX graph builds itself
            report = {"plan": plan.to_dict(), **preflight(parsed, shapes, graph)}
    if as_json:
        console.print_json(json.dumps(report))
    else:
        console.print("plan: " + "\n".join(plan.lines()), highlight=False)
        for table in report_tables(report):
            console.print(table)
        console.print(f"checked in {report['seconds']:.1f} s")
    for error in report["errors"]:
        err_console.print(
            f"[red]refused:[/red] {error['field']}: {error['message']}", highlight=False, soft_wrap=True
        )
    if not report["ok"]:
        raise typer.Exit(2)


COMMANDS: tuple[Callable[..., None], ...] = (compress, decode, inspect, check)  # check: deploy (issue 12)


def register(app: typer.Typer) -> None:
    """Add the library's commands to the `mcs` app."""
    for command in COMMANDS:
        app.command()(command)
