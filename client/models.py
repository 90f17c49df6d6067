"""Typed views of the service's JSON documents; `raw` keeps the full document for fields added later."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(frozen=True)
class Artifact:
    name: str
    size: int | None
    sha256: str | None
    url: str | None

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Artifact:
        size = doc.get("size")
        return cls(
            name=str(doc["name"]),
            size=int(size) if size is not None else None,
            sha256=(str(doc["sha256"]).lower() if doc.get("sha256") else None),
            url=doc.get("url"),
        )


@dataclass(frozen=True)
class JobProgress:
    stage: str
    fraction: float
    message: str = ""

    @classmethod
    def from_json(cls, doc: dict[str, Any] | None) -> JobProgress | None:
        if not doc:
            return None
        return cls(
            stage=str(doc.get("stage") or ""),
            fraction=float(doc.get("fraction") or 0.0),
            message=str(doc.get("message") or ""),
        )


@dataclass(frozen=True)
class Job:
    id: str
    state: str
    progress: JobProgress | None
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    error: Any
    metrics: dict[str, Any] | None
    artifacts: list[Artifact]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def done(self) -> bool:
        """True once the job reached a final state (succeeded, failed or cancelled)."""
        return self.state in TERMINAL_STATES

    @property
    def error_message(self) -> str | None:
        """The job's error as one line, whatever shape the server gives it (string or object)."""
        err = self.error
        if err is None or err == "":
            return None
        if isinstance(err, dict):
            parts = [str(err[k]) for k in ("type", "title", "message", "detail") if err.get(k)]
            return ": ".join(parts) or str(err)
        return str(err)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Job:
        return cls(
            id=str(doc["id"]),
            state=str(doc.get("state") or "unknown"),
            progress=JobProgress.from_json(doc.get("progress")),
            created_at=doc.get("created_at"),
            started_at=doc.get("started_at"),
            finished_at=doc.get("finished_at"),
            error=doc.get("error"),
            metrics=doc.get("metrics"),
            artifacts=[Artifact.from_json(a) for a in doc.get("artifacts") or []],
            raw=doc,
        )
