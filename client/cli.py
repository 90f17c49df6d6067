"""`mcs submit | jobs | status | cancel | download`: the service from a shell or a CI pipeline.

Exit codes (stable, for CI gates):
  0  the job succeeded and every threshold was met
  2  usage error (bad option or argument)
  3  the request failed: server unreachable, token refused, spec or file rejected (problem+json shown)
  4  the job failed
  5  the job was cancelled
  6  a threshold was missed (--min-ratio, --max-error-increase, --min-agreement), or the metric it needs
     was not reported, or a search job's budget was met by none of its trials
  7  an artifact's SHA-256 or size did not match what the server announced
  8  --timeout passed before the job finished
"""

from __future__ import annotations

import json
import sys
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from client.search_view import budget_missed, front_table

if TYPE_CHECKING:
    from rich.console import Console

    from client.client import Client
    from client.models import Job


class ExitCode(IntEnum):
    OK = 0
    USAGE = 2
    REQUEST_FAILED = 3
    JOB_FAILED = 4
    JOB_CANCELLED = 5
    THRESHOLD_MISSED = 6
    CHECKSUM_MISMATCH = 7
    TIMEOUT = 8


ServerOpt = Annotated[
    str, typer.Option("--server", envvar="MCS_SERVER", help="Service base URL (env MCS_SERVER).")
]
TokenOpt = Annotated[
    str | None,
    typer.Option("--token", envvar="MCS_TOKEN", help="Bearer token (env MCS_TOKEN).", show_default=False),
]
DEFAULT_SERVER = "http://127.0.0.1:8000"


def _err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True)


def _out_console() -> Console:
    from rich.console import Console

    return Console()


def _client(server: str, token: str | None) -> Client:
    from client.client import Client

    return Client(server, token)


def _fail(code: ExitCode, message: str) -> typer.Exit:
    _err_console().print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(int(code))


def _guarded(fn: Any) -> Any:
    """Run a command body, turning client errors into a message and a documented exit code."""
    from client.errors import ApiError, ChecksumMismatch, ClientError, TransportError, WaitTimeout

    try:
        return fn()
    except ChecksumMismatch as exc:
        raise _fail(ExitCode.CHECKSUM_MISMATCH, str(exc)) from exc
    except WaitTimeout as exc:
        raise _fail(ExitCode.TIMEOUT, str(exc)) from exc
    except (ApiError, TransportError, ClientError) as exc:
        raise _fail(ExitCode.REQUEST_FAILED, str(exc)) from exc


def _headline_table(job: Job) -> Any:
    from rich.table import Table

    from client.headline import headline, human_bytes

    h = headline(job.metrics)
    table = Table(show_header=False)
    table.add_column("metric", style="bold")
    table.add_column("value")
    table.add_row("job", job.id)
    table.add_row("state", job.state)
    table.add_row("ratio", f"{h.ratio:.2f}x" if h.ratio else "-")
    table.add_row("size before", human_bytes(h.size_before_bytes))
    table.add_row("size after", human_bytes(h.size_after_bytes))
    if h.params_total is not None:
        nz = f"{h.params_nonzero:.0f} non-zero of " if h.params_nonzero is not None else ""
        table.add_row("parameters", f"{nz}{h.params_total:.0f}")
    samples = f" ({h.eval_samples} samples)" if h.eval_samples else ""
    if h.error_before is not None:
        table.add_row("error before", f"{100 * h.error_before:.2f}%{samples}")
    if h.error_after is not None:
        table.add_row("error after", f"{100 * h.error_after:.2f}%{samples}")
    if h.error_increase is not None:
        table.add_row("error increase", f"{100 * h.error_increase:+.2f} points")
    where = f" ({h.eval_samples} samples, {h.fidelity_split} split)" if h.eval_samples else ""
    if h.agreement_after is not None:
        table.add_row("top-1 agreement with the upload", f"{100 * h.agreement_after:.2f}%{where}")
    if h.output_error_after is not None:
        table.add_row("relative output error", f"{h.output_error_after:.4f}{where}")
    return table


def _print_warnings(job: Job) -> None:
    """The job's own warnings about its numbers (metrics `evaluation.data.warnings`), on stderr."""
    from client.headline import job_warnings

    for warning in job_warnings(job.metrics):
        _err_console().print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)


def check_thresholds(
    metrics: dict[str, Any] | None,
    min_ratio: float | None,
    max_error_increase: float | None,
    min_agreement: float | None = None,
) -> list[str]:
    """Messages for every threshold missed; a gate whose metric is absent counts as missed (fail closed).

    `max_error_increase` is in percentage points (0.5: the error may rise by at most half a point);
    `min_agreement` is a fraction: the least top-1 agreement with the uploaded model (fidelity, no labels).
    """
    from client.headline import headline

    h = headline(metrics)
    missed = []
    if min_ratio is not None:
        if h.ratio is None:
            missed.append("--min-ratio given but the job reported no compression ratio")
        elif h.ratio < min_ratio:
            missed.append(f"ratio {h.ratio:.2f}x is below --min-ratio {min_ratio:g}")
    if max_error_increase is not None:
        if h.error_increase is None:
            missed.append("--max-error-increase given but the job reported no error before and after")
        elif 100 * h.error_increase > max_error_increase + 1e-9:
            missed.append(
                f"error rose by {100 * h.error_increase:.2f} points, over --max-error-increase "
                f"{max_error_increase:g}"
            )
    if min_agreement is not None:
        if h.agreement_after is None:
            missed.append("--min-agreement given but the job reported no top-1 agreement with the upload")
        elif h.agreement_after < min_agreement - 1e-12:
            missed.append(
                f"top-1 agreement with the upload {100 * h.agreement_after:.2f}% is below --min-agreement "
                f"{min_agreement:g}"
            )
    return missed


def _upload(client: Client, model: Path, spec: Path, data: Path | None, teacher: Path | None) -> Job:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    with Progress(
        TextColumn("uploading"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=_err_console(),
        transient=True,
    ) as bar:
        task = bar.add_task("upload", total=None)

        def advance(sent: int, total: int) -> None:
            bar.update(task, completed=sent, total=total)

        return client.submit(model, spec, data=data, teacher=teacher, on_upload_progress=advance)


class PlainProgress:
    """Progress as plain lines, for output that is not a terminal (a CI log), where a live bar shows
    nothing: a line when the state or stage changes, when the job moved `step` further, or every `every`
    seconds while nothing changes, so a log shows the job is alive."""

    def __init__(self, write: Any, clock: Any, every: float = 10.0, step: float = 0.05) -> None:
        self.write, self.clock, self.every, self.step = write, clock, every, step
        self.start = clock()
        self.last: tuple[str, str, float, float] | None = None  # state, stage, fraction, when

    def __call__(self, job: Job) -> None:
        stage = job.progress.stage if job.progress and job.progress.stage else ""
        fraction = 1.0 if job.state == "succeeded" else job.progress.fraction if job.progress else 0.0
        now = self.clock()
        if self.last is not None:
            state, last_stage, last_fraction, when = self.last
            moved = state != job.state or last_stage != stage or fraction - last_fraction >= self.step
            if not moved and now - when < self.every:
                return
        message = f" - {job.progress.message}" if job.progress and job.progress.message else ""
        self.write(
            f"[{now - self.start:6.0f} s] job {job.id} {job.state} {100 * fraction:3.0f}%"
            f"{' ' + stage if stage else ''}{message}"[:200]
        )
        self.last = (job.state, stage, fraction, now)


def _follow(client: Client, job_id: str, timeout: float | None, poll: float) -> Job:
    import time

    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    console = _err_console()
    if not console.is_terminal:  # a CI log: a live bar would print nothing until the end
        plain = PlainProgress(
            lambda line: console.print(line, highlight=False, soft_wrap=True), time.monotonic
        )
        return client.wait(job_id, timeout=timeout, poll_interval=poll, on_poll=plain)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("queued", total=1.0)

        def show(job: Job) -> None:
            stage = job.progress.stage if job.progress and job.progress.stage else job.state
            message = f" - {job.progress.message}" if job.progress and job.progress.message else ""
            fraction = job.progress.fraction if job.progress else 0.0
            if job.state == "succeeded":
                fraction = 1.0
            bar.update(task, description=f"{stage}{message}"[:80], completed=fraction)

        return client.wait(job_id, on_progress=show, timeout=timeout, poll_interval=poll)


def _download(client: Client, job_id: str, out: Path) -> list[Path]:
    console = _err_console()

    def done(artifact: Any, path: Path) -> None:
        console.print(f"  [green]verified[/] {path}  sha256 {artifact.sha256 or '(ETag)'}", highlight=False)

    return client.download(job_id, out, on_file=done)


def _finish(job: Job) -> None:
    """Exit with the job's outcome code when it did not succeed."""
    if job.state == "failed":
        raise _fail(ExitCode.JOB_FAILED, f"job {job.id} failed: {job.error_message or 'no reason given'}")
    if job.state == "cancelled":
        raise _fail(ExitCode.JOB_CANCELLED, f"job {job.id} was cancelled")


def submit(
    model: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="Model file: a state dict, or an .onnx graph.")
    ],
    spec: Annotated[Path, typer.Option("--spec", exists=True, dir_okay=False, help="JSON compression spec.")],
    data: Annotated[Path | None, typer.Option(exists=True, dir_okay=False, help="Data set file.")] = None,
    teacher: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Teacher weights.")
    ] = None,
    server: ServerOpt = DEFAULT_SERVER,
    token: TokenOpt = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job, fetch artifacts.")] = False,
    out: Annotated[Path | None, typer.Option(help="Artifacts folder (default ./mcs-out/JOB_ID).")] = None,
    min_ratio: Annotated[float | None, typer.Option(help="Exit 6 below this ratio; implies --wait.")] = None,
    max_error_increase: Annotated[
        float | None,
        typer.Option(help="Fail (exit 6) if error rises by more percentage points. Implies --wait."),
    ] = None,
    min_agreement: Annotated[
        float | None,
        typer.Option(help="Fail (exit 6) if top-1 agreement with the upload is below (0-1). Implies --wait."),
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="Stop waiting after N s (exit 8).")] = None,
    poll: Annotated[float, typer.Option(help="Seconds between status polls.")] = 1.0,
) -> None:
    """Upload a model and a spec; with --wait follow the job, verify artifacts and gate on thresholds."""
    if spec.suffix.lower() != ".json":
        _err_console().print(f"[yellow]note:[/] {spec} is sent as JSON text")
    if data is not None:
        from client.uploads import missing_validation_note

        note = missing_validation_note(data)
        if note:
            _err_console().print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    console = _out_console()

    def body() -> None:
        with _client(server, token) as client:
            job = _upload(client, model, spec, data, teacher)
            console.print(f"submitted job [bold]{job.id}[/] ({job.state})", highlight=False)
            gates = (min_ratio, max_error_increase, min_agreement)
            if not (wait or any(g is not None for g in gates)):
                return
            job = _follow(client, job.id, timeout, poll)
            _finish(job)
            _download(client, job.id, out or Path("mcs-out") / job.id)
            console.print(_headline_table(job))
            _print_warnings(job)
            missed = check_thresholds(job.metrics, min_ratio, max_error_increase, min_agreement)
            front = front_table(job.metrics)  # a search job: its front, and its own budget (exit 6)
            if front is not None:
                console.print(front)
            if budget_missed(job.metrics):
                missed.append(str(budget_missed(job.metrics)))
            if missed:
                raise _fail(ExitCode.THRESHOLD_MISSED, "; ".join(missed))

    _guarded(body)


def jobs(
    server: ServerOpt = DEFAULT_SERVER,
    token: TokenOpt = None,
    state: Annotated[str | None, typer.Option(help="Only jobs in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw job documents.")] = False,
) -> None:
    """List jobs."""
    from rich.table import Table

    def body() -> None:
        with _client(server, token) as client:
            page = client.list(state=state, limit=limit, offset=offset)
        if as_json:
            sys.stdout.write(json.dumps([j.raw for j in page], indent=2) + "\n")
            return
        table = Table("id", "state", "stage", "progress", "created")
        for j in page:
            stage = j.progress.stage if j.progress else ""
            frac = f"{100 * j.progress.fraction:.0f}%" if j.progress else ""
            table.add_row(j.id, j.state, stage, frac, j.created_at or "")
        _out_console().print(table)

    _guarded(body)


def status(
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    server: ServerOpt = DEFAULT_SERVER,
    token: TokenOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw job document.")] = False,
) -> None:
    """Show one job; exits 4 if it failed, 5 if it was cancelled."""

    def body() -> None:
        with _client(server, token) as client:
            job = client.get(job_id)
        if as_json:
            sys.stdout.write(json.dumps(job.raw, indent=2) + "\n")
        else:
            console = _out_console()
            p = job.progress
            where = f" at {p.stage} ({100 * p.fraction:.0f}%) {p.message}" if p and not job.done else ""
            console.print(f"job {job.id}: [bold]{job.state}[/]{where}", highlight=False)
            if job.metrics:
                console.print(_headline_table(job))
                _print_warnings(job)
            for a in job.artifacts:
                console.print(f"  {a.name}  {a.size} bytes  sha256 {a.sha256}", highlight=False)
        _finish(job)

    _guarded(body)


def cancel(
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    server: ServerOpt = DEFAULT_SERVER,
    token: TokenOpt = None,
) -> None:
    """Ask the service to stop a job."""

    def body() -> None:
        with _client(server, token) as client:
            job = client.cancel(job_id)
        _out_console().print(f"job {job.id}: {job.state}", highlight=False)

    _guarded(body)


def download(
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    server: ServerOpt = DEFAULT_SERVER,
    token: TokenOpt = None,
    out: Annotated[Path | None, typer.Option(help="Folder (default ./mcs-out/JOB_ID).")] = None,
) -> None:
    """Fetch a job's artifacts, verifying each SHA-256 (exit 7 on a mismatch)."""

    def body() -> None:
        with _client(server, token) as client:
            paths = _download(client, job_id, out or Path("mcs-out") / job_id)
        _out_console().print(f"{len(paths)} artifacts verified", highlight=False)

    _guarded(body)


EXIT_CODES_EPILOG = (
    "Exit codes: 0 ok; 2 usage; 3 request failed (unreachable, 401, rejected spec); 4 job failed; "
    "5 job cancelled; 6 threshold missed (or a search budget nobody met); 7 checksum mismatch; 8 timeout."
)


def register(app: typer.Typer) -> None:
    """Add the client commands to the `mcs` app."""
    app.command("submit", epilog=EXIT_CODES_EPILOG)(submit)
    for fn in (jobs, status, cancel, download):
        app.command(fn.__name__)(fn)
