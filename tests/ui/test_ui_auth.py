"""The web page under the API's rules: sign-in with a token kept in an HttpOnly, SameSite=Strict cookie,
the cookie good for reads only, each token seeing its own jobs, and every user-written string escaped.
The worker's `run_job` runs in-process here, so the jobs have real artifacts (report.html included)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mcs_common.settings import Settings
from service.app import create_app
from service.auth import create_token, revoke_token
from service.deps import SESSION_COOKIE
from tests.service.svc_helpers import SPEC, write_model
from worker.runner import run_job

HOSTILE = "<script>alert(1)</script>"


@dataclass
class Site:
    settings: Settings
    client: TestClient
    tmp: Path

    def token(self, name: str, **options: object) -> str:
        with self.client.app.state.sessions() as session:  # type: ignore[attr-defined]
            return create_token(session, name, **options)[1]  # type: ignore[arg-type]

    def submit(self, token: str | None, spec: dict[str, object] = SPEC, seed: int = 0) -> str:
        model = write_model(self.tmp / f"m{seed}", seed=seed)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = self.client.post(
            "/jobs",
            files={"model": (model.name, model.read_bytes())},
            data={"spec": json.dumps(spec)},
            headers=headers,
        )
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    def run(self, job_id: str) -> str:
        """The worker's code path, in this process (nothing consumes the embedded broker here)."""
        return run_job(job_id, self.settings, self.client.app.state.sessions)  # type: ignore[attr-defined]

    def sign_in(self, token: str) -> TestClient:
        """A separate browser (its own cookie jar), signed in with `token`."""
        browser = TestClient(self.client.app, follow_redirects=False)
        response = browser.post("/ui/login", data={"token": token}, headers={"Origin": "http://127.0.0.1"})
        assert response.status_code == 303 and response.headers["location"] == "/", response.text
        return browser


def make_site(tmp_path: Path, auth: str) -> Iterator[Site]:
    settings = Settings(  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'mcs.db'}",
        broker_url=None,  # embedded filesystem broker; no worker consumes it in these tests
        auth=auth,
        reaper_interval_s=0,
        progress_interval_s=0,
        cancel_poll_s=0,
    )
    with TestClient(create_app(settings), follow_redirects=False) as client:
        yield Site(settings, client, tmp_path)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    yield from make_site(tmp_path, "enabled")


@pytest.fixture
def open_site(tmp_path: Path) -> Iterator[Site]:
    yield from make_site(tmp_path, "disabled")


def test_without_a_session_the_page_asks_for_a_token(site: Site) -> None:
    response = site.client.get("/")
    assert response.status_code == 303 and response.headers["location"] == "/ui/login"
    assert site.client.get("/ui/jobs/00000000-0000-0000-0000-000000000000").status_code == 303
    login = site.client.get("/ui/login")
    assert login.status_code == 200 and login.headers["content-type"].startswith("text/html")
    assert '<form method="post" action="/ui/login"' in login.text and 'type="password"' in login.text
    policy = login.headers["content-security-policy"]
    assert (
        "default-src 'none'" in policy and "frame-ancestors 'none'" in policy and "script-src" not in policy
    )
    assert login.headers["cache-control"] == "no-store"
    assert site.client.get("/ui/static/ui.css").headers["content-type"].startswith("text/css")


def test_sign_in_keeps_the_token_in_an_httponly_strict_cookie_never_a_url(site: Site) -> None:
    token = site.token("alice")
    response = site.client.post("/ui/login", data={"token": token}, headers={"Origin": "http://127.0.0.1"})
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=") and token not in cookie  # a session, not the token
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Max-Age" not in cookie and "expires" not in cookie.lower()  # gone with the browser session
    assert token not in response.headers["location"]
    page = site.client.get("/")
    assert page.status_code == 200 and "signed in as <strong>alice</strong>" in page.text
    assert token not in page.text

    for bad in ("", "mcs_not-a-token", "Bearer x"):
        refused = TestClient(site.client.app).post("/ui/login", data={"token": bad})
        assert refused.status_code == 401 and "unknown or revoked" in refused.text
        assert "set-cookie" not in refused.headers

    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}, {"Origin": "null"}):
        forged = TestClient(site.client.app).post("/ui/login", data={"token": token}, headers=headers)
        assert forged.status_code == 403 and "set-cookie" not in forged.headers, headers


def test_each_token_sees_its_own_jobs_on_the_page(site: Site) -> None:
    alice, bob = site.token("alice"), site.token("bob")
    mine, theirs = site.submit(alice), site.submit(bob, seed=1)
    browser = site.sign_in(alice)
    page = browser.get("/").text
    assert f'id="job-{mine}"' in page and theirs not in page
    assert browser.get(f"/ui/jobs/{mine}").status_code == 200
    hidden = browser.get(f"/ui/jobs/{theirs}")
    assert hidden.status_code == 404 and "No such job" in hidden.text
    assert browser.get("/ui/jobs/not-a-uuid").status_code == 404
    admin = site.sign_in(site.token("root", admin=True)).get("/").text
    assert mine in admin and theirs in admin


def test_the_cookie_opens_reads_only(site: Site) -> None:
    alice = site.token("alice")
    job = site.submit(alice)
    browser = site.sign_in(alice)
    assert browser.get("/jobs").json()["items"][0]["id"] == job
    assert browser.get(f"/jobs/{job}").status_code == 200
    assert browser.get("/spec/schema").status_code == 200
    # nothing that changes state: a cookie a browser sends on its own must not cancel, delete or submit
    for method, path in (("POST", f"/jobs/{job}/cancel"), ("DELETE", f"/jobs/{job}"), ("POST", "/jobs")):
        denied = browser.request(method, path)
        assert denied.status_code == 401 and "bearer token is required" in denied.text, (method, path)
    # an Authorization header always decides, even a wrong one beside a good cookie
    assert browser.get("/jobs", headers={"Authorization": "Bearer mcs_wrong"}).status_code == 401
    assert site.client.get(f"/jobs/{job}").status_code == 401  # no cookie, no header


def test_artifact_links_work_with_the_cookie_and_report_html_is_sandboxed(site: Site) -> None:
    alice, bob = site.token("alice"), site.token("bob")
    job = site.submit(alice)
    assert site.run(job) == "succeeded"
    browser = site.sign_in(alice)
    page = browser.get(f"/ui/jobs/{job}").text
    artifacts = browser.get(f"/jobs/{job}/artifacts").json()["items"]
    assert [a["name"] for a in artifacts] == ["model.pth", "model.bin", "metrics.json", "report.html"]
    for artifact in artifacts:
        assert f'<a href="{artifact["url"]}">{artifact["name"]}</a>' in page
        body = browser.get(artifact["url"])
        assert body.status_code == 200
        assert (
            hashlib.sha256(body.content).hexdigest() == artifact["sha256"] == body.headers["etag"].strip('"')
        )
    report = browser.get(f"/jobs/{job}/artifacts/report.html")
    assert report.headers["content-type"] == "text/html; charset=utf-8"
    assert report.headers["content-disposition"] == 'inline; filename="report.html"'
    assert report.headers["content-security-policy"].endswith("sandbox")
    assert "<h2>Per-layer</h2>" in report.text and '<td class="name">fc2.weight</td>' in report.text
    other = site.sign_in(bob)
    assert other.get(f"/jobs/{job}/artifacts/report.html").status_code == 404


def test_a_revoked_token_signs_the_page_out_and_sign_out_clears_the_cookie(site: Site) -> None:
    browser = site.sign_in(site.token("alice"))
    with site.client.app.state.sessions() as session:  # type: ignore[attr-defined]
        revoke_token(session, "alice")
    expired = browser.get("/")
    assert expired.status_code == 303 and expired.headers["location"] == "/ui/login?reason=expired"
    assert "no longer valid" in browser.get(expired.headers["location"]).text

    browser = site.sign_in(site.token("bob"))
    out = browser.post("/ui/logout")
    assert out.status_code == 303 and f'{SESSION_COOKIE}=""' in out.headers["set-cookie"]
    assert browser.get("/").status_code == 303


def test_what_users_wrote_is_rendered_as_text(site: Site) -> None:
    alice = site.token("alice")
    spec = {
        "version": 1,
        "rules": [
            {"name": HOSTILE, "select": {"name": "fc2.weight"}, "steps": [{"type": "prune", "keep": 10**6}]}
        ],
    }
    job = site.submit(alice, spec)
    assert site.run(job) == "failed"
    browser = site.sign_in(alice)
    assert HOSTILE in browser.get(f"/jobs/{job}").json()["error"]
    for path in ("/", f"/ui/jobs/{job}"):
        page = browser.get(path).text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page, path
        assert "<script" not in page.lower(), path


def test_a_report_that_cannot_be_drawn_never_fails_the_job(
    site: Site, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import compression_core.report as report

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no plots today")

    monkeypatch.setattr(report, "write_job_report", broken)
    alice = site.token("alice")
    job = site.submit(alice)
    with caplog.at_level(logging.WARNING, logger="worker.report"):
        assert site.run(job) == "succeeded"
    assert "report.html could not be written" in caplog.text and "no plots today" in caplog.text
    listed = site.client.get(f"/jobs/{job}", headers={"Authorization": f"Bearer {alice}"}).json()
    assert [a["name"] for a in listed["artifacts"]] == ["model.pth", "model.bin", "metrics.json"]
    assert listed["metrics"]["totals"]["ratio"] > 1


def test_with_auth_disabled_the_page_just_works(open_site: Site) -> None:
    job = open_site.submit(None)
    page = open_site.client.get("/")
    assert page.status_code == 200 and f'id="job-{job}"' in page.text and "auth disabled" in page.text
    assert open_site.client.get(f"/ui/jobs/{job}").status_code == 200
    login = open_site.client.get("/ui/login")
    assert login.status_code == 303 and login.headers["location"] == "/"
    filtered = open_site.client.get("/?state=succeeded").text
    assert f'id="job-{job}"' not in filtered and "No jobs succeeded yet." in filtered


def test_a_cross_site_sign_out_is_refused(site: Site) -> None:
    """A page elsewhere must not sign the user out (auth enabled: the cookie's page's own check)."""
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}):
        response = site.client.post("/ui/logout", headers=headers)
        assert response.status_code == 403 and "set-cookie" not in response.headers, headers
    assert site.client.post("/ui/logout", headers={"Origin": "http://127.0.0.1"}).status_code == 303


def _cookie_value(response: object) -> str:
    header = response.headers["set-cookie"]  # type: ignore[attr-defined]
    return header.split(";")[0].split("=", 1)[1].strip('"')


def test_the_session_cookie_is_a_signed_reference_not_the_token(site: Site) -> None:
    """Issue 21, item 9: the cookie was the raw bearer token (a stolen cookie could submit and delete)."""
    token = site.token("alice")
    job = site.submit(token)
    login = site.client.post("/ui/login", data={"token": token}, headers={"Origin": "http://127.0.0.1"})
    value = _cookie_value(login)
    assert value and token not in value and value != token
    reader = TestClient(site.client.app)
    reader.cookies.set(SESSION_COOKIE, value)
    assert reader.get(f"/jobs/{job}").status_code == 200  # reads, as before
    as_bearer = TestClient(site.client.app).get("/jobs", headers={"Authorization": f"Bearer {value}"})
    assert as_bearer.status_code == 401  # never a bearer token
    for forged in (value[:-2] + ("AA" if not value.endswith("AA") else "BB"), "x.1.y", "", value + "."):
        browser = TestClient(site.client.app, follow_redirects=False)
        browser.cookies.set(SESSION_COOKIE, forged)
        assert browser.get(f"/jobs/{job}").status_code == 401, forged
        assert browser.get("/").status_code == 303, forged


def test_the_session_cookie_is_secure_behind_https(site: Site) -> None:
    token = site.token("alice")
    proxied = site.client.post(
        "/ui/login",
        data={"token": token},
        headers={"Origin": "http://127.0.0.1", "X-Forwarded-Proto": "https"},
    )
    assert proxied.status_code == 303 and "Secure" in proxied.headers["set-cookie"]
    direct = TestClient(site.client.app, base_url="https://testserver", follow_redirects=False)
    served = direct.post("/ui/login", data={"token": token}, headers={"Origin": "https://testserver"})
    assert served.status_code == 303 and "Secure" in served.headers["set-cookie"]
    plain = site.client.post("/ui/login", data={"token": token}, headers={"Origin": "http://127.0.0.1"})
    assert "Secure" not in plain.headers["set-cookie"]  # a browser drops a Secure cookie over http
