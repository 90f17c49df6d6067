"""Exceptions the client raises, each carrying what the server said (RFC 9457 problem+json) if it did."""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Base class of every error the client raises on purpose."""


class TransportError(ClientError):
    """The server could not be reached (or kept failing transiently) after every retry."""


class ApiError(ClientError):
    """The server answered with an error status; `problem` is its problem+json body (or a stand-in)."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        self.title: str = str(problem.get("title") or f"HTTP {status}")
        self.detail: str | None = problem.get("detail")
        self.type: str | None = problem.get("type")
        self.errors: list[Any] = list(problem.get("errors") or [])
        super().__init__(self._message())

    def _message(self) -> str:
        text = f"{self.status} {self.title}"
        if self.detail:
            text += f": {self.detail}"
        for err in self.errors[:10]:
            if isinstance(err, dict):
                loc = err.get("loc") or err.get("field") or err.get("pointer")
                where = ".".join(str(p) for p in loc) if isinstance(loc, list | tuple) else loc
                msg = err.get("msg") or err.get("detail") or err.get("message") or err
                text += f"\n  - {where}: {msg}" if where else f"\n  - {msg}"
            else:
                text += f"\n  - {err}"
        return text


class BadRequest(ApiError):
    """400/422: the request (spec, files) was rejected; `errors` names the fields."""


class Unauthorized(ApiError):
    """401/403: missing, wrong or insufficient bearer token."""


class NotFound(ApiError):
    """404: no such job or artifact."""


class Conflict(ApiError):
    """409: the job is not in a state that allows this (e.g. cancelling a finished job)."""


class PayloadTooLarge(ApiError):
    """413: an uploaded file is over the server's limit."""


class ServerError(ApiError):
    """5xx that stayed after the retries."""


class ChecksumMismatch(ClientError):
    """A downloaded artifact's SHA-256 (or size) differs from what the server announced."""

    def __init__(self, name: str, expected: str, actual: str) -> None:
        self.name = name
        self.expected = expected
        self.actual = actual
        super().__init__(f"artifact {name!r}: expected sha256 {expected}, got {actual}")


class WaitTimeout(ClientError):
    """`Client.wait` gave up before the job reached a final state."""

    def __init__(self, job_id: str, state: str, timeout: float) -> None:
        self.job_id = job_id
        self.state = state
        super().__init__(f"job {job_id} still {state} after {timeout:g} s")


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    422: BadRequest,
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
}


def api_error(status: int, problem: dict[str, Any]) -> ApiError:
    """The most specific ApiError subclass for a status code."""
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    return cls(status, problem)
