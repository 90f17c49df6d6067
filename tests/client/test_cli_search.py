"""`mcs submit --wait` on a search job: the front is printed; a budget nothing met exits 6."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from client import Client, RetryPolicy
from client import cli as client_cli
from client.cli import ExitCode
from tests.client.fake_service import FakeService, succeeded_job

S = "rules.0.steps.0.sparsity"


def search_metrics(met: bool) -> dict:
    trials = [
        {
            "index": 0,
            "parameters": {S: 0.5},
            "state": "succeeded",
            "label": None,
            "ratio": 4.0,
            "error_after": 0.030,
            "validation_error_after": 0.031,
        },
        {
            "index": 1,
            "parameters": {S: 0.9},
            "state": "succeeded",
            "label": None,
            "ratio": 9.0,
            "error_after": 0.045,
            "validation_error_after": 0.047,
        },
        {
            "index": 2,
            "parameters": {S: 0.8},
            "state": "succeeded",
            "label": None,
            "ratio": 7.0,
            "error_after": 0.050,
            "validation_error_after": 0.052,
        },
    ]
    return {
        "totals": {"ratio": 9.0},
        "evaluation": {"before": {"error": 0.03, "samples": 360}, "after": {"error": 0.045, "samples": 360}},
        "search": {
            "mode": "budget",
            "trials": trials,
            "pareto": [0, 1],
            "best": 1 if met else 0,
            "counts": {"trials": 3, "succeeded": 3, "failed": 0},
            "budget": {"max_error_increase": 2.0, "met": met, "message": "..."},
        },
    }


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, fake: FakeService) -> typer.Typer:
    monkeypatch.setattr(
        client_cli,
        "_client",
        lambda server, token: Client(
            server, token, transport=fake.transport(), retry=RetryPolicy(max_attempts=2), sleep=lambda s: None
        ),
    )
    app = typer.Typer()
    client_cli.register(app)
    return app


@pytest.mark.parametrize("met", [True, False])
def test_submit_wait_prints_the_front_and_gates_on_the_budget(
    app: typer.Typer, fake: FakeService, model_file: Path, tmp_path: Path, met: bool
) -> None:
    metrics = search_metrics(met)
    fake.next_job = succeeded_job(
        "job-s", metrics, {"model.bin": b"b", "metrics.json": json.dumps(metrics).encode()}
    )
    spec = tmp_path / "spec.json"
    spec.write_text("{}")
    result = CliRunner().invoke(
        app,
        [
            "submit",
            str(model_file),
            "--spec",
            str(spec),
            "--wait",
            "--out",
            str(tmp_path / "o"),
            "--poll",
            "0",
        ],
    )
    assert "Pareto front of 3 trials" in result.output
    assert "9.00x" in result.output and "4.00x" in result.output and "7.00x" not in result.output
    if met:
        assert result.exit_code == ExitCode.OK, result.output
    else:
        assert result.exit_code == ExitCode.THRESHOLD_MISSED == 6
        assert "no trial of the search met its error budget" in result.output


def test_a_fidelity_search_prints_agreement_and_names_its_budget() -> None:
    from rich.console import Console

    from client.search_view import budget_missed, front_table

    trial = {"index": 0, "parameters": {S: 0.5}, "state": "succeeded", "ratio": 4.0}
    fidelity = {"agreement_after": 0.9712, "validation_agreement_after": 0.968, "output_error_after": 0.1234}
    metrics = {
        "search": {
            "mode": "budget",
            "trials": [{**trial, **fidelity}],
            "pareto": [0],
            "best": 0,
            "budget": {"measure": "agreement", "met": False, "min_top1_agreement": 0.99},
        }
    }
    console = Console(width=200, record=True)
    console.print(front_table(metrics))
    text = console.export_text()
    assert "test agreement" in text and "97.12%" in text and "96.80%" in text and "0.1234" in text
    message = budget_missed(metrics)
    assert message is not None and "top-1 agreement with the upload at least 0.99" in message
