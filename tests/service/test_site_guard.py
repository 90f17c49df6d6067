"""With auth disabled, web pages cannot drive the API (issue 10, item 7): a cross-site form post (another
local port is cross-origin) is refused, and a rebound DNS name cannot even read."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient
from svc_helpers import SPEC, write_model


def post_job(client: TestClient, model: Path, headers: dict[str, str]) -> object:
    files = {"model": (model.name, model.read_bytes())}
    return client.post("/jobs", files=files, data={"spec": json.dumps(SPEC)}, headers=headers)


def test_cross_site_posts_are_refused(client: TestClient, tmp_path: Path) -> None:
    model = write_model(tmp_path)
    for headers in (
        {"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:5173"},  # a page on another local port
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://127.0.0.1:5173"},
        {"Origin": "null"},
    ):
        response = post_job(client, model, headers)
        assert response.status_code == 403, (headers, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert client.get("/jobs").json()["total"] == 0
    same = post_job(client, model, {"Sec-Fetch-Site": "same-origin", "Origin": "http://127.0.0.1"})
    assert same.status_code == 202
    assert post_job(client, model, {}).status_code == 202  # curl, the client library: no such headers
    job = same.json()["id"]
    assert client.post(f"/jobs/{job}/cancel", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert client.get("/jobs").json()["total"] == 2


def test_a_non_loopback_host_is_refused_even_for_reads(client: TestClient, tmp_path: Path) -> None:
    job = post_job(client, write_model(tmp_path), {}).json()["id"]
    for method, url in (("GET", "/jobs"), ("GET", f"/jobs/{job}"), ("DELETE", f"/jobs/{job}")):
        response = client.request(method, url, headers={"Host": "attacker.example"})
        assert response.status_code == 421, (method, url)
        assert "attacker.example" in response.json()["detail"]
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000", "app.localhost"):
        assert client.get("/jobs", headers={"Host": host}).status_code == 200, host
    assert client.get(f"/jobs/{job}").json()["state"] == "queued"


def test_ui_logout_needs_the_same_site(client: TestClient) -> None:
    refused = client.post(
        "/ui/logout", headers={"Sec-Fetch-Site": "same-origin", "Origin": "https://evil.example"}
    )
    assert refused.status_code == 403
