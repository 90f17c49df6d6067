"""Who may do what: bearer tokens stored hashed, clients kept apart (404, not 403), admins see all,
per-token limits answered 429/413 naming the limit, and auth never silently off."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from svc_helpers import ROOT, SPEC, write_model
from typer.testing import CliRunner

from mcs.app import app as mcs_app
from mcs_common.models import Token
from mcs_common.settings import Settings
from service.auth import authenticate, hash_token

from .conftest import Api


def submit(api: Api, headers: dict[str, str], model: Path, **extra: str) -> object:
    return api.client.post(
        "/jobs",
        files={"model": (model.name, model.read_bytes())},
        data={"spec": json.dumps(SPEC)},
        headers={**headers, **extra},
    )


def test_every_route_but_health_needs_a_live_token(api: Api, tmp_path: Path) -> None:
    job_id = "00000000-0000-0000-0000-000000000000"
    routes = [
        ("GET", "/jobs"),
        ("POST", "/jobs"),
        ("GET", f"/jobs/{job_id}"),
        ("POST", f"/jobs/{job_id}/cancel"),
        ("DELETE", f"/jobs/{job_id}"),
        ("GET", f"/jobs/{job_id}/artifacts"),
        ("GET", f"/jobs/{job_id}/artifacts/model.bin"),
        ("GET", "/spec/schema"),
    ]
    for headers in ({}, {"Authorization": "Bearer mcs_wrong"}, {"Authorization": "Basic dXNlcjpwdw=="}):
        for method, path in routes:
            response = api.client.request(method, path, headers=headers)
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.headers["content-type"] == "application/problem+json"
    health = api.client.get("/healthz")
    assert health.status_code == 200 and health.json()["auth"] == "enabled"
    assert api.client.get("/readyz").status_code == 200
    good = api.token("ci-main")
    assert api.client.get("/jobs", headers=good).status_code == 200
    assert api.client.get("/spec/schema", headers=good).status_code == 200


def test_tokens_are_stored_hashed_and_revocation_is_immediate(api: Api) -> None:
    headers = api.token("ci-main")
    secret = headers["Authorization"].removeprefix("Bearer ")
    with api.client.app.state.sessions() as session:  # type: ignore[attr-defined]
        row = session.query(Token).one()
        assert row.token_hash == hash_token(secret) and secret not in row.token_hash
        assert authenticate(session, f"Bearer {secret}") is not None
        assert authenticate(session, f"Bearer {secret}x") is None
    assert api.client.get("/jobs", headers=headers).status_code == 200
    with api.client.app.state.sessions() as session:  # type: ignore[attr-defined]
        from service.auth import revoke_token

        revoke_token(session, "ci-main")
    assert api.client.get("/jobs", headers=headers).status_code == 401


def test_a_client_sees_only_its_own_jobs_and_an_admin_sees_all(api: Api, tmp_path: Path) -> None:
    alice, bob, admin = api.token("alice"), api.token("bob"), api.token("root", admin=True)
    model = write_model(tmp_path)
    job = submit(api, alice, model).json()
    url = f"/jobs/{job['id']}"
    assert api.client.get(url, headers=alice).status_code == 200
    for method, path in (
        ("GET", url),
        ("POST", f"{url}/cancel"),
        ("DELETE", url),
        ("GET", f"{url}/artifacts"),
        ("GET", f"{url}/artifacts/model.bin"),
    ):
        response = api.client.request(method, path, headers=bob)
        assert response.status_code == 404, (method, path)  # not 403: bob learns nothing
    assert api.client.get("/jobs", headers=bob).json()["total"] == 0
    submit(api, bob, model)
    assert api.client.get("/jobs", headers=alice).json()["total"] == 1
    assert api.client.get("/jobs", headers=admin).json()["total"] == 2
    assert api.client.get(url, headers=admin).status_code == 200
    assert api.client.post(f"{url}/cancel", headers=admin).json()["state"] == "cancelled"


def test_concurrent_job_limit_is_429_naming_the_limit(api: Api, tmp_path: Path) -> None:
    limited = api.token("small", max_concurrent_jobs=2)
    model = write_model(tmp_path)
    first = [submit(api, limited, model).json()["id"] for _ in range(2)]
    response = submit(api, limited, model)
    assert response.status_code == 429, response.text
    problem = response.json()
    assert "max_concurrent_jobs=2" in problem["detail"] and problem["status"] == 429
    assert response.headers["content-type"] == "application/problem+json"
    api.client.post(f"/jobs/{first[0]}/cancel", headers=limited)  # a slot frees up
    assert submit(api, limited, model).status_code == 202
    assert submit(api, api.token("other"), model).status_code == 202  # limits are per token


def test_upload_limit_of_a_token_is_413_naming_it(api: Api, tmp_path: Path) -> None:
    model = write_model(tmp_path)
    small = api.token("tiny", max_upload_bytes=1000)
    response = submit(api, small, model)
    assert response.status_code == 413
    assert "max_upload_bytes" in response.json()["detail"] and "=1000" in response.json()["detail"]
    assert submit(api, api.token("big"), model).status_code == 202


def test_job_time_limit_of_a_token_reaches_the_task_message(api: Api, tmp_path: Path) -> None:
    timed = api.token("timed", max_job_seconds=7)
    job = submit(api, timed, write_model(tmp_path)).json()
    broker = redis.Redis.from_url(api.settings.effective_broker_url)
    messages = [json.loads(m) for m in broker.lrange(api.settings.queue_cpu, 0, -1)]
    mine = [m for m in messages if m["headers"]["id"] == job["id"]]
    assert mine and mine[0]["headers"]["timelimit"][1] == 7  # [hard, soft]
    assert mine[0]["headers"]["timelimit"][0] > 7


def test_token_cli_creates_lists_and_revokes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("MCS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("MCS_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    created = runner.invoke(mcs_app, ["token", "create", "--name", "ci-main", "--max-concurrent-jobs", "3"])
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("mcs_") and len(secret) > 40
    listed = runner.invoke(mcs_app, ["token", "list"])
    assert "ci-main" in listed.stdout and "max_concurrent_jobs=3" in listed.stdout
    assert secret not in listed.stdout and "active" in listed.stdout
    assert runner.invoke(mcs_app, ["token", "create", "--name", "ci-main"]).exit_code == 2  # unique
    assert runner.invoke(mcs_app, ["token", "revoke", "ci-main"]).exit_code == 0
    assert "revoked" in runner.invoke(mcs_app, ["token", "list"]).stdout
    assert runner.invoke(mcs_app, ["token", "revoke", "nobody"]).exit_code == 1


def test_auth_disabled_is_loud_and_refused_off_loopback(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, auth="disabled", host="127.0.0.1")
    settings.check_bind()  # loopback: allowed
    for host in ("0.0.0.0", "192.168.1.7", "::"):
        with pytest.raises(ValueError, match="auth disabled"):
            Settings(data_dir=tmp_path, auth="disabled", host=host).check_bind()
    Settings(data_dir=tmp_path, auth="disabled", host="0.0.0.0", allow_insecure=True).check_bind()
    Settings(data_dir=tmp_path, auth="enabled", host="0.0.0.0").check_bind()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCS_")}
    env.update(MCS_AUTH="disabled", MCS_DATA_DIR=str(tmp_path / "d"), PYTHONPATH=str(ROOT))
    refused = subprocess.run(
        [sys.executable, "-m", "mcs", "serve", "--host", "0.0.0.0", "--port", "1"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "refusing to listen on 0.0.0.0" in refused.stderr
