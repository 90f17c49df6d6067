"""POST /jobs with Idempotency-Key: a retry returns the first job, a different payload under the same key
is 422, and keys are scoped per client."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from svc_helpers import SPEC, write_model

from .conftest import Api


def post(
    api: Api, headers: dict[str, str], model: Path, spec: object = SPEC, key: str | None = None
) -> object:
    extra = {"Idempotency-Key": key} if key else {}
    return api.client.post(
        "/jobs",
        files={"model": (model.name, model.read_bytes())},
        data={"spec": json.dumps(spec)},
        headers={**headers, **extra},
    )


def test_a_retry_returns_the_first_job(api: Api, tmp_path: Path) -> None:
    me = api.token("me")
    model = write_model(tmp_path)
    first = post(api, me, model, key="order-1")
    again = post(api, me, model, key="order-1")
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert api.client.get("/jobs", headers=me).json()["total"] == 1
    assert len(list(api.settings.jobs_dir.iterdir())) == 1
    assert list(api.settings.staging_dir.iterdir()) == []  # the retry's upload was discarded
    assert post(api, me, model, key="order-2").json()["id"] != first.json()["id"]
    assert post(api, me, model).json()["id"] != first.json()["id"]  # no key: a new job each time


def test_the_same_key_with_another_payload_is_422(api: Api, tmp_path: Path) -> None:
    me = api.token("me")
    post(api, me, write_model(tmp_path / "a"), key="k")
    other_model = post(api, me, write_model(tmp_path / "b", seed=5), key="k")
    assert other_model.status_code == 422 and other_model.json()["title"] == "Idempotency key reused"
    other_spec = {**SPEC, "rules": [{**SPEC["rules"][0], "name": "renamed"}]}  # type: ignore[dict-item]
    assert post(api, me, write_model(tmp_path / "a"), spec=other_spec, key="k").status_code == 422
    assert api.client.get("/jobs", headers=me).json()["total"] == 1


def test_keys_are_scoped_per_client(api: Api, tmp_path: Path) -> None:
    alice, bob = api.token("alice"), api.token("bob")
    model = write_model(tmp_path)
    a = post(api, alice, model, key="same").json()
    b = post(api, bob, model, key="same").json()
    assert a["id"] != b["id"]
    assert post(api, bob, model, key="same").json()["id"] == b["id"]


def test_a_retry_is_answered_even_at_the_concurrency_limit(api: Api, tmp_path: Path) -> None:
    one = api.token("one", max_concurrent_jobs=1)
    model = write_model(tmp_path)
    first = post(api, one, model, key="x").json()
    assert post(api, one, model, key="x").json()["id"] == first["id"]
    assert post(api, one, model, key="y").status_code == 429


def test_concurrent_retries_make_one_job(api: Api, tmp_path: Path) -> None:
    me = api.token("me")
    model = write_model(tmp_path)
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: post(api, me, model, key="race"), range(6)))
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["id"] for a in answers}) == 1
    assert api.client.get("/jobs", headers=me).json()["total"] == 1


def test_a_bad_key_is_422(api: Api, tmp_path: Path) -> None:
    response = post(api, api.token("me"), write_model(tmp_path), key="x" * 300)
    assert response.status_code == 422 and response.json()["errors"][0]["field"].endswith("Idempotency-Key")
