from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from client import Client, RetryPolicy
from client import cli as client_cli
from client.cli import ExitCode, check_thresholds
from tests.client.fake_service import FakeJob, FakeService, succeeded_job

METRICS = {
    "totals": {"ratio": 12.5, "original_bits": 8_000_000, "params": 250_000, "nonzeros": 20_000},
    "files": {"model_bin_bytes": 80_000},
    "evaluation": {"before": {"error": 0.040, "samples": 1000}, "after": {"error": 0.046, "samples": 1000}},
}


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    client_cli.register(app)
    return app


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch, fake: FakeService) -> list[tuple[str, str | None]]:
    """Route the CLI's client to the fake service; records the (server, token) each command used."""
    used: list[tuple[str, str | None]] = []

    def make(server: str, token: str | None) -> Client:
        used.append((server, token))
        return Client(
            server, token, transport=fake.transport(), retry=RetryPolicy(max_attempts=2), sleep=lambda s: None
        )

    monkeypatch.setattr(client_cli, "_client", make)
    return used


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"version": 1, "rules": []}))
    return path


def _submit(app: typer.Typer, model: Path, spec: Path, out: Path, *extra: str, env: dict | None = None):
    args = ["submit", str(model), "--spec", str(spec), "--wait", "--out", str(out), "--poll", "0", *extra]
    return CliRunner().invoke(app, args, env=env)


def test_submit_wait_downloads_and_prints_headline(
    app, fake, servers, model_file, spec_file, tmp_path
) -> None:
    fake.next_job = succeeded_job(
        "job-ok", METRICS, {"model.bin": b"b" * 100, "metrics.json": json.dumps(METRICS).encode()}
    )
    result = _submit(
        app,
        model_file,
        spec_file,
        tmp_path / "out",
        "--min-ratio",
        "10",
        "--max-error-increase",
        "1",
        env={"MCS_SERVER": "http://ci.example", "MCS_TOKEN": "tok"},
    )
    assert result.exit_code == ExitCode.OK, result.output
    assert servers == [("http://ci.example", "tok")]
    assert fake.requests[0].headers["Authorization"] == "Bearer tok"
    assert (tmp_path / "out" / "model.bin").read_bytes() == b"b" * 100
    assert "12.50x" in result.output and "+0.60 points" in result.output
    assert "job-ok" in result.output


def test_failed_job_exits_4(app, fake, servers, model_file, spec_file, tmp_path) -> None:
    fake.next_job = FakeJob(
        id="job-bad",
        states=[{"state": "running"}, {"state": "failed"}],
        error="SpecError: no tensor matches 'conv9.*'",
    )
    result = _submit(app, model_file, spec_file, tmp_path / "out")
    assert result.exit_code == ExitCode.JOB_FAILED == 4
    assert "no tensor matches" in result.output
    assert not (tmp_path / "out").exists()


def test_cancelled_job_exits_5(app, fake, servers, model_file, spec_file, tmp_path) -> None:
    fake.next_job = FakeJob(id="job-c", states=[{"state": "cancelled"}])
    assert _submit(app, model_file, spec_file, tmp_path / "out").exit_code == ExitCode.JOB_CANCELLED == 5


def test_ratio_below_min_ratio_exits_6(app, fake, servers, model_file, spec_file, tmp_path) -> None:
    fake.next_job = succeeded_job("job-low", METRICS, {"model.bin": b"b"})
    result = _submit(app, model_file, spec_file, tmp_path / "out", "--min-ratio", "20")
    assert result.exit_code == ExitCode.THRESHOLD_MISSED == 6
    assert "ratio 12.50x is below --min-ratio 20" in result.output
    assert (tmp_path / "out" / "model.bin").exists()  # artifacts are still fetched, for inspection


def test_error_increase_over_max_exits_6(app, fake, servers, model_file, spec_file, tmp_path) -> None:
    fake.next_job = succeeded_job("job-err", METRICS, {"model.bin": b"b"})
    result = _submit(app, model_file, spec_file, tmp_path / "out", "--max-error-increase", "0.5")
    assert result.exit_code == ExitCode.THRESHOLD_MISSED
    assert "error rose by 0.60 points" in result.output


def test_threshold_implies_wait(app, fake, servers, model_file, spec_file, tmp_path) -> None:
    fake.next_job = succeeded_job("job-w", METRICS, {"model.bin": b"b"})
    args = [
        "submit",
        str(model_file),
        "--spec",
        str(spec_file),
        "--min-ratio",
        "100",
        "--poll",
        "0",
        "--out",
        str(tmp_path / "o"),
    ]
    assert CliRunner().invoke(app, args).exit_code == ExitCode.THRESHOLD_MISSED


def test_checksum_mismatch_exits_7(app, fake, servers, model_file, spec_file, tmp_path) -> None:
    fake.next_job = succeeded_job("job-cs", METRICS, {"model.bin": b"bbbb"})
    fake.corrupt.add("model.bin")
    result = _submit(app, model_file, spec_file, tmp_path / "out")
    assert result.exit_code == ExitCode.CHECKSUM_MISMATCH == 7
    assert "expected sha256" in result.output


def test_rejected_spec_exits_3_with_the_problem_detail(app, fake, servers, model_file, tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"invalid": True}))
    result = _submit(app, model_file, bad, tmp_path / "out")
    assert result.exit_code == ExitCode.REQUEST_FAILED == 3
    assert "Invalid spec" in result.output and "rules.0.method" in result.output


def test_timeout_exits_8(app, fake, servers, model_file, spec_file, tmp_path) -> None:
    fake.next_job = FakeJob(id="job-slow", states=[{"state": "running"}])
    result = _submit(app, model_file, spec_file, tmp_path / "out", "--timeout", "0")
    assert result.exit_code == ExitCode.TIMEOUT == 8


def test_submit_without_wait_returns_after_upload(app, fake, servers, model_file, spec_file) -> None:
    result = CliRunner().invoke(app, ["submit", str(model_file), "--spec", str(spec_file)])
    assert result.exit_code == 0 and "submitted job job-1" in result.output
    assert len(fake.requests) == 1


def test_jobs_status_cancel_download(app, fake, servers, tmp_path) -> None:
    fake.add_job(succeeded_job("done", METRICS, {"model.bin": b"zz"}))
    fake.jobs["done"].states = fake.jobs["done"].states[-1:]
    fake.add_job(
        FakeJob(id="run", states=[{"state": "running", "progress": {"stage": "prune", "fraction": 0.5}}])
    )
    runner = CliRunner()
    listing = runner.invoke(app, ["jobs", "--json"])
    assert listing.exit_code == 0 and [j["id"] for j in json.loads(listing.output)] == ["done", "run"]
    status = runner.invoke(app, ["status", "run"])
    assert status.exit_code == 0 and "running" in status.output and "prune" in status.output
    assert runner.invoke(app, ["status", "done", "--json"]).exit_code == 0
    assert runner.invoke(app, ["cancel", "run"]).exit_code == 0
    assert runner.invoke(app, ["status", "run"]).exit_code == ExitCode.JOB_CANCELLED
    assert runner.invoke(app, ["status", "missing"]).exit_code == ExitCode.REQUEST_FAILED
    got = runner.invoke(app, ["download", "done", "--out", str(tmp_path / "d")])
    assert got.exit_code == 0 and (tmp_path / "d" / "model.bin").read_bytes() == b"zz"


def test_thresholds_fail_closed_without_metrics() -> None:
    assert check_thresholds({}, 2.0, None) == ["--min-ratio given but the job reported no compression ratio"]
    assert "no error before and after" in check_thresholds({"totals": {"ratio": 3}}, 2.0, 0.5)[0]
    assert check_thresholds(METRICS, 12.5, 0.6) == []  # equal to the bounds passes


def test_the_agreement_gate_reads_the_fidelity_and_fails_closed() -> None:
    metrics = {"evaluation": {"after": {"fidelity": {"top1_agreement": 0.97}}}}
    assert check_thresholds(metrics, None, None, 0.97) == []
    (missed,) = check_thresholds(metrics, None, None, 0.99)
    assert "97.00% is below --min-agreement 0.99" in missed
    assert "no top-1 agreement" in check_thresholds({}, None, None, 0.9)[0]


def test_a_data_set_without_x_val_is_pointed_out_at_submit_and_after(
    app, fake, servers, model_file, spec_file, tmp_path
) -> None:
    import numpy as np

    warning = "the validation split (36 samples) was carved from the uploaded x_train, ... upload x_val/y_val"
    metrics = {**METRICS, "evaluation": {**METRICS["evaluation"], "data": {"warnings": [warning]}}}
    fake.next_job = succeeded_job("job-val", metrics, {"model.bin": b"b"})
    data = tmp_path / "data.npz"
    np.savez(data, x_train=np.zeros((4, 2), np.float32), y_train=np.zeros(4, np.int64))
    result = _submit(app, model_file, spec_file, tmp_path / "out", "--data", str(data))
    assert result.exit_code == ExitCode.OK, result.output
    assert "data.npz has no x_val/y_val" in result.output  # before the upload, from the file's names
    assert f"warning: {warning}" in result.output  # after the job, from its metrics
    np.savez(
        data, x_train=np.zeros((4, 2), np.float32), y_train=np.zeros(4, np.int64), x_val=np.zeros((2, 2))
    )
    fake.next_job = succeeded_job("job-val2", METRICS, {"model.bin": b"b"})
    result = _submit(app, model_file, spec_file, tmp_path / "out2", "--data", str(data))
    assert result.exit_code == ExitCode.OK
    assert "no x_val" not in result.output and "warning" not in result.output


def test_submit_wait_prints_progress_lines_when_its_output_is_a_log(
    app, fake, servers, model_file, spec_file, tmp_path
) -> None:
    progress = [
        {"state": "queued"},
        {"state": "running", "progress": {"stage": "prune", "fraction": 0.1, "message": "fc1.weight"}},
        {"state": "running", "progress": {"stage": "prune", "fraction": 0.5, "message": "fc2.weight"}},
        {"state": "succeeded", "progress": {"stage": "done", "fraction": 1.0, "message": ""}},
    ]
    fake.next_job = FakeJob(id="job-log", states=progress, artifacts={"model.bin": b"b"}, metrics=METRICS)
    result = _submit(app, model_file, spec_file, tmp_path / "out")  # CliRunner's output is not a terminal
    assert result.exit_code == ExitCode.OK, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("[") and "job-log" in line]
    assert [line.split("] ", 1)[1] for line in lines] == [
        "job job-log queued   0%",
        "job job-log running  10% prune - fc1.weight",
        "job job-log running  50% prune - fc2.weight",
        "job job-log succeeded 100% done",
    ]


def test_plain_progress_prints_on_change_every_few_percent_and_every_few_seconds() -> None:
    from client.cli import PlainProgress
    from client.models import Job

    now = [0.0]
    lines: list[str] = []
    plain = PlainProgress(lines.append, lambda: now[0], every=10.0, step=0.05)

    def poll(fraction: float, after: float) -> None:
        now[0] += after
        plain(
            Job.from_json({"id": "j", "state": "running", "progress": {"stage": "s", "fraction": fraction}})
        )

    poll(0.10, 0)  # first: printed
    poll(0.12, 1)  # 2 points, 1 s: quiet
    poll(0.16, 1)  # 6 points since the last line: printed
    poll(0.17, 5)  # quiet
    poll(0.17, 6)  # nothing moved, but 11 s since the last line: printed, the job is alive
    assert [line.split("] ", 1)[1] for line in lines] == [
        "job j running  10% s",
        "job j running  16% s",
        "job j running  17% s",
    ]
    assert lines[-1].startswith("[    13 s]")
