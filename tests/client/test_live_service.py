"""The client and the `mcs` commands against the real service: uvicorn on a free port, SQLite, Redis as the
broker and a real `mcs worker` process (the service's own test helpers start it)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner

from client import BadRequest, Client, NotFound, RetryPolicy, Unauthorized
from client import cli as client_cli
from client.cli import ExitCode
from compression_core.format import decode_state_dict
from compression_core.io import load_state_dict
from tests.client.live import Live, running_service
from tests.service.svc_helpers import SPEC, write_model


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with running_service(tmp_path_factory.mktemp("live")) as service:
        yield service


@pytest.fixture
def api(live: Live) -> Iterator[Client]:
    with Client(live.url, live.token, retry=RetryPolicy(max_attempts=3, base_delay=0.05)) as client:
        yield client


def test_submit_wait_download_against_the_service(live: Live, api: Client, tmp_path: Path) -> None:
    model = write_model(tmp_path / "in")
    sent: list[int] = []
    job = api.submit(model, SPEC, on_upload_progress=lambda s, t: sent.append(s))
    assert job.state == "queued" and sent[-1] == model.stat().st_size
    stages: list[str] = []
    done = api.wait(job.id, on_progress=lambda j: stages.append(j.state), timeout=120, poll_interval=0.1)
    assert done.state == "succeeded", done.error
    assert stages[-1] == "succeeded"
    assert done.metrics and done.metrics["totals"]["ratio"] > 1.0

    paths = api.download(job.id, tmp_path / "out")
    assert (
        {p.name for p in paths}
        == {a.name for a in done.artifacts}
        >= {"model.bin", "model.pth", "metrics.json"}
    )
    assert "report.html" in {p.name for p in paths}  # verified against its sha256 like the others
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "<h2>Per-layer</h2>" in page and '<td class="name">fc1.weight</td>' in page
    decoded = decode_state_dict(tmp_path / "out" / "model.bin")
    dense = load_state_dict(tmp_path / "out" / "model.pth")
    assert decoded.keys() == dense.keys() and all(decoded[k].equal(dense[k]) for k in dense)
    assert job.id in [j.id for j in api.list(state="succeeded")]


def test_problem_details_from_the_service(live: Live, api: Client, tmp_path: Path) -> None:
    model = write_model(tmp_path)
    with pytest.raises(BadRequest) as info:
        api.submit(model, {"version": 1, "rules": [{"select": {"name": "*"}, "steps": [{"type": "magic"}]}]})
    assert info.value.status == 422 and info.value.errors  # names the offending field
    assert "rules" in str(info.value)
    with pytest.raises(NotFound):
        api.get(str(uuid.uuid4()))
    with Client(live.url, "wrong-token") as stranger, pytest.raises(Unauthorized) as denied:
        stranger.get(str(uuid.uuid4()))
    assert denied.value.status == 401 and "bearer token" in str(denied.value)


def test_a_client_without_a_token_gets_a_clear_401(live: Live, app: typer.Typer) -> None:
    with Client(live.url) as anonymous, pytest.raises(Unauthorized) as denied:
        anonymous.list()
    assert denied.value.status == 401
    assert "bearer token is required" in str(denied.value) and "mcs token create" in str(denied.value)
    bare = CliRunner().invoke(app, ["jobs", "--server", live.url], env={"MCS_TOKEN": ""})
    assert bare.exit_code == ExitCode.REQUEST_FAILED and "401" in bare.output, bare.output


def test_two_tokens_do_not_see_each_others_jobs(live: Live, api: Client, tmp_path: Path) -> None:
    job = api.submit(write_model(tmp_path), SPEC)
    with Client(live.url, live.other_token, retry=RetryPolicy(max_attempts=1)) as other:
        assert job.id not in [j.id for j in other.list()]
        for attempt in (
            lambda: other.get(job.id),
            lambda: other.artifacts(job.id),
            lambda: other.download(job.id, tmp_path / "stolen"),
            lambda: other.cancel(job.id),
            lambda: other.delete(job.id),
        ):
            with pytest.raises(NotFound) as hidden:
                attempt()
            assert hidden.value.status == 404 and "no job with id" in str(hidden.value)
        own = other.submit(write_model(tmp_path, seed=1), SPEC)
        assert [j.id for j in other.list()] == [own.id]
        with pytest.raises(NotFound):
            api.get(own.id)
        assert other.wait(own.id, timeout=120, poll_interval=0.1).done
    assert api.get(job.id).id == job.id  # still there for its owner
    assert api.wait(job.id, timeout=120, poll_interval=0.1).done


def test_transient_503s_in_front_of_the_service_are_retried(live: Live, tmp_path: Path) -> None:
    """A flaky proxy: the first two requests get 503 (Retry-After: 0) without reaching the service."""
    real = httpx.HTTPTransport()
    failures = iter([True, True])
    seen: list[str] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request.headers.get("Idempotency-Key", ""))
        if next(failures, False):
            return httpx.Response(503, headers={"Retry-After": "0"}, json={"title": "Service Unavailable"})
        return real.handle_request(request)

    sleeps: list[float] = []
    with Client(live.url, live.token, transport=httpx.MockTransport(flaky), sleep=sleeps.append) as client:
        job = client.submit(write_model(tmp_path), SPEC)
        assert client.get(job.id).id == job.id
    assert len(seen) == 4 and len(set(seen[:3])) == 1 and seen[0]  # one key for the three submit attempts
    assert len(sleeps) == 2


def test_cancel_and_delete(live: Live, api: Client, tmp_path: Path) -> None:
    job = api.submit(write_model(tmp_path), SPEC)
    final = api.wait(job.id, timeout=120, poll_interval=0.1)
    assert final.done
    api.delete(job.id)
    with pytest.raises(NotFound):
        api.get(job.id)


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    client_cli.register(app)
    return app


def _run(app: typer.Typer, live: Live, *args: str) -> object:
    env = {"MCS_SERVER": live.url, "MCS_TOKEN": live.token}
    return CliRunner().invoke(app, list(args), env=env)


def test_cli_gates_on_the_real_service(live: Live, app: typer.Typer, tmp_path: Path) -> None:
    model = write_model(tmp_path / "in")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))
    ok = _run(
        app,
        live,
        "submit",
        str(model),
        "--spec",
        str(spec),
        "--wait",
        "--out",
        str(tmp_path / "ok"),
        "--min-ratio",
        "1.5",
        "--poll",
        "0.1",
        "--timeout",
        "120",
    )
    assert ok.exit_code == ExitCode.OK, ok.output
    assert (tmp_path / "ok" / "model.bin").is_file() and "verified" in ok.output

    low = _run(
        app,
        live,
        "submit",
        str(model),
        "--spec",
        str(spec),
        "--out",
        str(tmp_path / "low"),
        "--min-ratio",
        "1000",
        "--poll",
        "0.1",
        "--timeout",
        "120",
    )
    assert low.exit_code == ExitCode.THRESHOLD_MISSED, low.output

    failing = tmp_path / "failing.json"
    failing.write_text(
        json.dumps(
            {"rules": [{"select": {"name": "fc2.weight"}, "steps": [{"type": "prune", "keep": 100000}]}]}
        )
    )
    failed = _run(
        app,
        live,
        "submit",
        str(model),
        "--spec",
        str(failing),
        "--wait",
        "--out",
        str(tmp_path / "f"),
        "--poll",
        "0.1",
        "--timeout",
        "120",
    )
    assert failed.exit_code == ExitCode.JOB_FAILED, failed.output
    assert "keep" in failed.output

    denied = CliRunner().invoke(app, ["jobs", "--server", live.url, "--token", "nope"])
    assert denied.exit_code == ExitCode.REQUEST_FAILED and "401" in denied.output
