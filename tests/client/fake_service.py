"""An in-memory stand-in of the service's HTTP API behind httpx.MockTransport, with scripted failures.

Used to drive the client through paths a real server rarely takes (503 storms, dropped connections, a
corrupted artifact); the real service is exercised in test_live_service.py.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class FakeJob:
    id: str
    states: list[dict[str, Any]]  # what successive GETs return (the last one repeats)
    artifacts: dict[str, bytes] = field(default_factory=dict)
    metrics: dict[str, Any] | None = None
    error: str | None = None
    gets: int = 0


class FakeService:
    def __init__(self) -> None:
        self.jobs: dict[str, FakeJob] = {}
        self.requests: list[httpx.Request] = []
        self.bodies: list[bytes] = []
        self.fail_next: list[Any] = []  # per request: int status, an exception instance, or None (serve it)
        self.retry_after: str | None = None
        self.corrupt: set[str] = set()  # artifact names served with flipped bytes
        self.announce_sha: dict[str, str] = {}  # override of announced sha256 per artifact name
        self.idempotency: dict[str, str] = {}
        self.next_job: FakeJob | None = None

    # -- scripting -----------------------------------------------------------------------------------------
    def add_job(self, job: FakeJob) -> FakeJob:
        self.jobs[job.id] = job
        return job

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    # -- the API -------------------------------------------------------------------------------------------
    def _artifact_list(self, job: FakeJob) -> list[dict[str, Any]]:
        return [
            {
                "name": name,
                "size": len(data),
                "sha256": self.announce_sha.get(name, hashlib.sha256(data).hexdigest()),
                "url": f"/jobs/{job.id}/artifacts/{name}",
            }
            for name, data in job.artifacts.items()
        ]

    def _doc(self, job: FakeJob, index: int | None = None) -> dict[str, Any]:
        i = min(job.gets if index is None else index, len(job.states) - 1)
        state = job.states[i]
        final = state["state"] in ("succeeded", "failed", "cancelled")
        return {
            "id": job.id,
            "state": state["state"],
            "progress": state.get("progress"),
            "created_at": "2026-01-01T00:00:00Z",
            "started_at": None,
            "finished_at": None,
            "error": job.error if state["state"] == "failed" else None,
            "metrics": job.metrics if final else None,
            "artifacts": self._artifact_list(job) if state["state"] == "succeeded" else [],
        }

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = request.read()  # drains streamed uploads, so progress callbacks fire
        self.requests.append(request)
        self.bodies.append(body)
        if self.fail_next:
            failure = self.fail_next.pop(0)
            if isinstance(failure, Exception):
                raise failure
            if failure is not None:
                headers = {"Retry-After": self.retry_after} if self.retry_after else {}
                return httpx.Response(
                    failure, json={"title": "Unavailable", "status": failure}, headers=headers
                )
        path = request.url.path
        if request.method == "POST" and path == "/jobs":
            return self._submit(request, body)
        if m := re.fullmatch(r"/jobs/([^/]+)", path):
            job = self.jobs.get(m[1])
            if job is None:
                return _problem(404, "Not Found", f"no job {m[1]}")
            if request.method == "DELETE":
                del self.jobs[m[1]]
                return httpx.Response(204)
            doc = self._doc(job)
            job.gets += 1
            return httpx.Response(200, json=doc)
        if m := re.fullmatch(r"/jobs/([^/]+)/cancel", path):
            job = self.jobs[m[1]]
            job.states = [{"state": "cancelled"}]
            return httpx.Response(202, json=self._doc(job))
        if m := re.fullmatch(r"/jobs/([^/]+)/artifacts", path):
            return httpx.Response(200, json=self._artifact_list(self.jobs[m[1]]))
        if m := re.fullmatch(r"/jobs/([^/]+)/artifacts/(.+)", path):
            data = self.jobs[m[1]].artifacts[m[2]]
            if m[2] in self.corrupt:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            return httpx.Response(
                200, content=data, headers={"ETag": f'"{hashlib.sha256(data).hexdigest()}"'}
            )
        if path == "/jobs":
            page = [self._doc(j, 0) for j in self.jobs.values()]
            if state := request.url.params.get("state"):
                page = [d for d in page if d["state"] == state]
            return httpx.Response(200, json={"items": page, "total": len(page)})
        return _problem(404, "Not Found", path)

    def _submit(self, request: httpx.Request, body: bytes) -> httpx.Response:
        if b'name="spec"' not in body:
            return _problem(
                422, "Invalid spec", "spec missing", errors=[{"loc": ["spec"], "msg": "required"}]
            )
        spec_text = body.split(b'name="spec"\r\n\r\n', 1)[1].split(b"\r\n--", 1)[0]
        spec = json.loads(spec_text)
        if spec.get("invalid"):
            errors = [{"loc": ["rules", 0, "method"], "msg": "unknown method 'magic'"}]
            return _problem(422, "Invalid spec", "the spec does not validate", errors=errors)
        key = request.headers.get("Idempotency-Key")
        if key and key in self.idempotency:
            job = self.jobs[self.idempotency[key]]
        else:
            job = self.next_job or FakeJob(id=f"job-{len(self.jobs) + 1}", states=[{"state": "queued"}])
            self.next_job = None
            self.add_job(job)
            if key:
                self.idempotency[key] = job.id
        return httpx.Response(202, json=self._doc(job, 0), headers={"Location": f"/jobs/{job.id}"})


def _problem(status: int, title: str, detail: str, **extra: Any) -> httpx.Response:
    doc = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return httpx.Response(status, json=doc, headers={"Content-Type": "application/problem+json"})


def succeeded_job(job_id: str, metrics: dict[str, Any], artifacts: dict[str, bytes]) -> FakeJob:
    return FakeJob(
        id=job_id,
        states=[
            {"state": "queued", "progress": {"stage": "queued", "fraction": 0.0, "message": ""}},
            {"state": "running", "progress": {"stage": "prune", "fraction": 0.4, "message": "fc1.weight"}},
            {"state": "running", "progress": {"stage": "encode", "fraction": 0.9, "message": ""}},
            {"state": "succeeded", "progress": {"stage": "done", "fraction": 1.0, "message": ""}},
        ],
        artifacts=artifacts,
        metrics=metrics,
    )
