"""Issue 10, item 8: the small ones. nosniff everywhere, strict JSON numbers and unique keys in specs, a
full disk answers 507, a queued cancel leaves no control message behind, and X-Forwarded-* is believed
only from configured proxies."""

from __future__ import annotations

import errno
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from svc_helpers import SPEC, write_model

from mcs_common.settings import Settings
from service.app import create_app
from service.embedded import uvicorn_config
from service.uploads import _Receiver


def submit(client: TestClient, model: Path, spec_text: str) -> object:
    return client.post("/jobs", files={"model": (model.name, model.read_bytes())}, data={"spec": spec_text})


def test_every_response_says_nosniff(client: TestClient, tmp_path: Path) -> None:
    job = submit(client, write_model(tmp_path), json.dumps(SPEC))
    responses = [job, client.get("/jobs"), client.get("/jobs/not-a-uuid"), client.get("/healthz")]
    responses.append(client.get(f"/jobs/{job.json()['id']}/artifacts/model.bin"))  # type: ignore[attr-defined]
    for response in responses:
        assert response.headers["x-content-type-options"] == "nosniff", response.request.url  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"version": 1, "rules": [{"steps": [{"type": "quantize", "k": "4"}]}]}', "spec.rules.0.steps"),
        (
            '{"version": 1, "rules": [{"steps": [{"type": "prune", "sparsity": NaN}]}]}',
            "NaN is not a JSON number",
        ),
        (
            '{"version": 1, "rules": [], "rules": [{"steps": [{"type": "prune", "keep": 1}]}]}',
            "duplicate keys",
        ),
    ],
)
def test_specs_are_strict_json(client: TestClient, tmp_path: Path, text: str, message: str) -> None:
    response = submit(client, write_model(tmp_path), text)
    assert response.status_code == 422, response.text  # type: ignore[attr-defined]
    assert message in response.json()["detail"]  # type: ignore[attr-defined]


def test_infinity_in_a_spec_is_refused(client: TestClient, tmp_path: Path) -> None:
    spec = {"version": 1, "rules": [{"steps": [{"type": "lowrank", "alpha": 1.0}]}]}
    text = json.dumps(spec).replace("1.0", "Infinity")
    response = submit(client, write_model(tmp_path), text)
    assert response.status_code == 422 and "Infinity is not a JSON number" in response.json()["detail"]  # type: ignore[attr-defined]


def test_a_full_disk_answers_507_and_leaves_nothing(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(self: _Receiver) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_Receiver, "flush", full)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:  # as a real server
        response = submit(client, write_model(tmp_path), json.dumps(SPEC))
    assert response.status_code == 507, response.text  # type: ignore[attr-defined]
    assert response.headers["retry-after"] == "60"  # type: ignore[attr-defined]
    assert "storage is full" in response.json()["detail"]  # type: ignore[attr-defined]
    assert list(settings.staging_dir.iterdir()) == []


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / "data", auth="disabled", reaper_interval_s=0)  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as client:
        yield client


def test_cancelling_a_queued_job_sends_no_control_message(embedded: TestClient, tmp_path: Path) -> None:
    """A dead worker's mailbox stays bound to the broadcast exchange; each revoke used to add a file to it."""
    settings: Settings = embedded.app.state.settings  # type: ignore[attr-defined]
    table = settings.broker_dir / "control" / "celery.pidbox.exchange"
    table.write_text(json.dumps([["", "", "mcs-dead@host.celery.pidbox"]]))
    job = submit(embedded, write_model(tmp_path), json.dumps(SPEC)).json()["id"]  # type: ignore[attr-defined]
    messages = settings.broker_dir / "messages"
    before = {p.name for p in messages.iterdir()}
    assert embedded.post(f"/jobs/{job}/cancel").json()["state"] == "cancelled"
    after = {p.name for p in messages.iterdir()}
    assert after == before  # only the job's own message, which the worker will skip (not queued)


def test_forwarded_headers_are_believed_only_from_configured_proxies(tmp_path: Path) -> None:
    plain = uvicorn_config(Settings(data_dir=tmp_path), app=None)  # type: ignore[call-arg]
    assert plain.proxy_headers is False  # uvicorn's default believes 127.0.0.1
    proxied = uvicorn_config(Settings(data_dir=tmp_path, trusted_proxies="10.0.0.5"), app=None)  # type: ignore[call-arg]
    assert proxied.proxy_headers is True and proxied.forwarded_allow_ips == "10.0.0.5"


def test_a_pickled_module_answers_415_in_plain_words(client: TestClient, tmp_path: Path) -> None:
    """Issue 20: torch.save(model) got torch's own text back, cut off and with ANSI escapes inside."""
    import torch

    path = tmp_path / "model.pth"
    torch.save(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()), path)
    response = submit(client, path, json.dumps(SPEC))
    assert response.status_code == 415, response.text  # type: ignore[attr-defined]
    detail = response.json()["detail"]  # type: ignore[attr-defined]
    assert "this is a pickled module (torch.save(model))" in detail
    assert "upload model.state_dict() instead (safetensors preferred" in detail
    assert "\x1b" not in response.text and "weights_only" not in detail  # type: ignore[attr-defined]
