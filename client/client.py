"""`Client`: submit a model and a spec to the compression service, follow the job, fetch verified artifacts.

Every request carries the bearer token when one is given. Transient failures (connection errors, timeouts,
429/502/503/504) are retried with backoff, honouring Retry-After; a submit is retried with the same
Idempotency-Key, so the server creates the job at most once. Errors the server reports come back as
`ApiError` subclasses carrying its problem+json document.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import httpx

from client.errors import ApiError, ChecksumMismatch, ClientError, TransportError, WaitTimeout, api_error
from client.models import Artifact, Job
from client.retry import RETRY_STATUSES, RetryPolicy
from client.uploads import ProgressFile, UploadProgress, UploadTracker

log = logging.getLogger(__name__)

JobCallback = Callable[[Job], None]
SpecInput = dict[str, Any] | str | Path

_CHUNK = 1 << 20
_USER_AGENT = "mcs-client/0.1"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, read=300.0)  # long reads: big artifacts, slow uploads


def _spec_text(spec: Any) -> str:
    """The spec as JSON text: a dict, a JSON string, a path to a JSON file, or a pydantic model."""
    if hasattr(spec, "model_dump_json"):
        return str(spec.model_dump_json())
    if isinstance(spec, Path):
        text = spec.read_text(encoding="utf-8")
    elif isinstance(spec, str):
        text = spec
    elif isinstance(spec, dict):
        return json.dumps(spec)
    else:
        raise TypeError(f"spec must be a dict, JSON text, Path or pydantic model, not {type(spec).__name__}")
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise ClientError(f"spec is not valid JSON: {exc}") from exc
    return text


def _problem(resp: httpx.Response) -> dict[str, Any]:
    """The problem+json body of an error response, or a stand-in built from the status and text."""
    try:
        doc = resp.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        doc = None
    if isinstance(doc, dict):
        if "title" not in doc and "detail" in doc and not isinstance(doc["detail"], str):
            # FastAPI's default validation error shape: {"detail": [{loc, msg, ...}]}
            return {"title": resp.reason_phrase, "status": resp.status_code, "errors": doc["detail"]}
        return doc
    return {"title": resp.reason_phrase or f"HTTP {resp.status_code}", "detail": resp.text[:500] or None}


def _safe_relative(name: str) -> PurePosixPath:
    """An artifact name as a relative path that cannot leave the output folder."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or any(part in ("", ".", "..") for part in path.parts) or "\\" in name:
        raise ClientError(f"refusing unsafe artifact name {name!r}")
    return path


def _etag_sha(resp: httpx.Response) -> str | None:
    etag = resp.headers.get("ETag")
    if not etag:
        return None
    etag = etag.removeprefix("W/").strip('"').lower()
    return etag if len(etag) == 64 else None


class Client:
    """A synchronous client of the compression service (one connection pool; use as a context manager)."""

    def __init__(
        self,
        server: str,
        token: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        headers = {"User-Agent": _USER_AGENT, "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=server, headers=headers, timeout=timeout, transport=transport)
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._clock = clock

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- the one place requests are sent and retried -------------------------------------------------------

    def _send(
        self,
        method: str,
        url: str,
        *,
        build: Callable[[contextlib.ExitStack], dict[str, Any]] | None = None,
        stream: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send with retries; `build` makes fresh request arguments (re-opened files) for every attempt."""
        attempts = self.retry.max_attempts
        for attempt in range(1, attempts + 1):
            with contextlib.ExitStack() as stack:
                args = build(stack) if build is not None else kwargs
                try:
                    request = self._http.build_request(method, url, **args)
                    resp = self._http.send(request, stream=stream)
                except httpx.TransportError as exc:
                    if attempt == attempts:
                        raise TransportError(f"{method} {url}: {exc!r} (after {attempt} attempts)") from exc
                    wait = self.retry.delay(attempt, None)
                    log.warning("%s %s failed (%r); retry %d in %.1f s", method, url, exc, attempt, wait)
                    self._sleep(wait)
                    continue
            if resp.status_code in RETRY_STATUSES and attempt < attempts:
                resp.read()
                resp.close()
                wait = self.retry.delay(attempt, resp.headers.get("Retry-After"))
                log.warning("%s %s -> %d; retry %d in %.1f s", method, url, resp.status_code, attempt, wait)
                self._sleep(wait)
                continue
            if resp.is_error:
                resp.read()
                resp.close()
                raise api_error(resp.status_code, _problem(resp))
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    def _json(self, method: str, url: str, **kwargs: Any) -> Any:
        resp = self._send(method, url, **kwargs)
        if resp.status_code == 204 or not resp.content:
            return None
        return resp.json()

    # -- jobs ----------------------------------------------------------------------------------------------

    def submit(
        self,
        model_path: str | Path,
        spec: SpecInput | Any,
        data: str | Path | None = None,
        teacher: str | Path | None = None,
        idempotency_key: str | None = None,
        on_upload_progress: UploadProgress | None = None,
    ) -> Job:
        """Upload a model (and optional data set / teacher) with a spec; returns the queued job.

        The files are streamed; `on_upload_progress(sent, total)` is called as bytes go out. One
        Idempotency-Key (given or generated) is used for every retry of this submit.
        """
        spec_text = _spec_text(spec)
        paths = {"model": Path(model_path)}
        if data is not None:
            paths["data"] = Path(data)
        if teacher is not None:
            paths["teacher"] = Path(teacher)
        for field, path in paths.items():
            if not path.is_file():
                raise ClientError(f"{field} file not found: {path}")
        total = sum(p.stat().st_size for p in paths.values())
        key = idempotency_key or str(uuid.uuid4())

        def build(stack: contextlib.ExitStack) -> dict[str, Any]:
            tracker = UploadTracker(total, on_upload_progress)
            files = {}
            for field, path in paths.items():
                handle = ProgressFile(path, tracker)
                stack.callback(handle.close)
                files[field] = (path.name, handle, "application/octet-stream")
            return {"files": files, "data": {"spec": spec_text}, "headers": {"Idempotency-Key": key}}

        return Job.from_json(self._json("POST", "/jobs", build=build))

    def get(self, job_id: str) -> Job:
        return Job.from_json(self._json("GET", f"/jobs/{quote(job_id, safe='')}"))

    def list(self, state: str | None = None, limit: int = 50, offset: int = 0) -> list[Job]:
        """One page of jobs, newest first as the server orders them."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if state:
            params["state"] = state
        doc = self._json("GET", "/jobs", params=params)
        items = doc if isinstance(doc, list) else (doc.get("items") or doc.get("jobs") or [])
        return [Job.from_json(item) for item in items]

    def cancel(self, job_id: str) -> Job:
        doc = self._json("POST", f"/jobs/{quote(job_id, safe='')}/cancel")
        return Job.from_json(doc) if isinstance(doc, dict) and "id" in doc else self.get(job_id)

    def delete(self, job_id: str) -> None:
        self._send("DELETE", f"/jobs/{quote(job_id, safe='')}").close()

    def artifacts(self, job_id: str) -> builtins.list[Artifact]:
        doc = self._json("GET", f"/jobs/{quote(job_id, safe='')}/artifacts")
        items = doc if isinstance(doc, list) else (doc.get("artifacts") or doc.get("items") or [])
        return [Artifact.from_json(a) for a in items]

    def spec_schema(self) -> dict[str, Any]:
        return dict(self._json("GET", "/spec/schema"))

    def ready(self) -> bool:
        """True when the service says it can take jobs (`/readyz` answers 2xx)."""
        try:
            self._send("GET", "/readyz").close()
        except (ApiError, TransportError):
            return False
        return True

    def wait(
        self,
        job_id: str,
        on_progress: JobCallback | None = None,
        timeout: float | None = None,
        poll_interval: float = 1.0,
        on_poll: JobCallback | None = None,
    ) -> Job:
        """Poll until the job is final and return it (whatever the outcome); `on_progress` sees each change,
        `on_poll` every answer (e.g. to print a line every few seconds while nothing changes).

        Raises WaitTimeout after `timeout` seconds.
        """
        deadline = None if timeout is None else self._clock() + timeout
        last: tuple[Any, ...] | None = None
        while True:
            job = self.get(job_id)
            if on_poll is not None:
                on_poll(job)
            seen = (job.state, job.progress)
            if on_progress is not None and seen != last:
                on_progress(job)
            last = seen
            if job.done:
                return job
            if deadline is not None and self._clock() >= deadline:
                raise WaitTimeout(job_id, job.state, timeout or 0.0)
            pause = poll_interval
            if deadline is not None:
                pause = max(0.0, min(pause, deadline - self._clock()))
            self._sleep(pause)

    # -- artifacts -----------------------------------------------------------------------------------------

    def download(
        self,
        job_id: str,
        out_dir: str | Path,
        names: builtins.list[str] | None = None,
        on_file: Callable[[Artifact, Path], None] | None = None,
    ) -> builtins.list[Path]:
        """Fetch the job's artifacts into `out_dir`, verifying each one's size and SHA-256.

        A file appears under its final name only once verified (written to a temporary name, then renamed);
        a mismatch raises ChecksumMismatch and leaves no file behind.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        wanted = self.artifacts(job_id)
        if names is not None:
            wanted = [a for a in wanted if a.name in set(names)]
        paths = []
        for artifact in wanted:
            path = self._download_one(job_id, artifact, out)
            paths.append(path)
            if on_file is not None:
                on_file(artifact, path)
        return paths

    def _download_one(self, job_id: str, artifact: Artifact, out: Path) -> Path:
        target = out.joinpath(*_safe_relative(artifact.name).parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        url = f"/jobs/{quote(job_id, safe='')}/artifacts/{quote(artifact.name, safe='/')}"
        attempts = self.retry.max_attempts
        for attempt in range(1, attempts + 1):
            tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
            try:
                resp = self._send("GET", url, stream=True)
                try:
                    expected = artifact.sha256 or _etag_sha(resp)
                    if expected is None:
                        raise ClientError(f"artifact {artifact.name!r}: the server announced no sha256")
                    digest, size = _write_hashed(resp.iter_bytes(_CHUNK), tmp)
                finally:
                    resp.close()
                if artifact.size is not None and size != artifact.size:
                    raise ChecksumMismatch(artifact.name, f"{artifact.size} bytes", f"{size} bytes")
                if digest != expected:
                    raise ChecksumMismatch(artifact.name, expected, digest)
                os.replace(tmp, target)
                return target
            except httpx.TransportError as exc:  # broken mid-stream: fetch the file again
                if attempt == attempts:
                    raise TransportError(f"GET {url}: {exc!r} (after {attempt} attempts)") from exc
                self._sleep(self.retry.delay(attempt, None))
            finally:
                tmp.unlink(missing_ok=True)
        raise AssertionError("unreachable")  # pragma: no cover


def _write_hashed(chunks: Iterator[bytes], path: Path) -> tuple[str, int]:
    """Write chunks to `path`, returning (sha256 hex, size); fsync'd so a rename after it is durable."""
    sha = hashlib.sha256()
    size = 0
    with open(path, "wb") as fh:
        for chunk in chunks:
            sha.update(chunk)
            size += len(chunk)
            fh.write(chunk)
        fh.flush()
        os.fsync(fh.fileno())
    return sha.hexdigest(), size
