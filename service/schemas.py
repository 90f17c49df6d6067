"""What the API speaks: one schema family per resource, plus the RFC 9457 problem document."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from mcs_common.models import JobState


class Progress(BaseModel):
    stage: str | None = Field(None, description="The pipeline stage running now, e.g. 'prune'.")
    fraction: float = Field(0.0, ge=0.0, le=1.0, description="Done so far over the whole job, 0..1.")
    message: str | None = None


class ArtifactPublic(BaseModel):
    name: str = Field(description="One of model.pth, model.bin, metrics.json, report.html.")
    size: int = Field(description="Bytes.")
    sha256: str = Field(description="Hex digest; also the download's ETag.")
    url: str


class JobLinks(BaseModel):
    self: str
    cancel: str
    artifacts: str


class ChildPublic(BaseModel):
    """One trial of a search job: an ordinary job of its own (`url`), summarised here."""

    id: uuid.UUID
    index: int
    state: JobState
    label: str | None = Field(None, description="sensitivity: the layer, or 'suggested'")
    parameters: dict[str, Any] = Field(description="spec path -> the value this trial ran with")
    ratio: float | None = Field(None, description="stored-bits compression ratio, once succeeded")
    error: float | None = Field(None, description="test error after compression (a fraction)")
    validation_error: float | None = Field(None, description="validation error the search chose on")
    agreement: float | None = Field(
        None, description="test split: top-1 agreement with the uploaded model (fidelity; a fraction)"
    )
    validation_agreement: float | None = Field(
        None, description="validation split: top-1 agreement with the uploaded model (a fidelity budget)"
    )
    reason: str | None = Field(None, description="why the trial failed")
    url: str


class JobSummary(BaseModel):
    """A job in a listing: everything but the spec and the metrics report (each can be megabytes);
    `GET /jobs/{id}` and the `metrics.json` artifact carry those."""

    id: uuid.UUID
    state: JobState
    queue: Literal["cpu", "gpu"]
    method: str | None = Field(None, description="The spec's steps, e.g. 'prune+quantize'.")
    progress: Progress
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int = Field(description="Deliveries to a worker so far (more than 1 after a worker was lost).")
    cancel_requested: bool
    error: str | None = Field(None, description="Why the job failed, in words a person can act on.")
    artifacts: list[ArtifactPublic] = Field(default_factory=list)
    links: JobLinks
    parent_id: uuid.UUID | None = Field(None, description="The search job this job is a trial of.")
    children: list[ChildPublic] | None = Field(
        None, description="A search job's trials (GET /jobs/{id} only; null for other jobs)."
    )


class JobPublic(JobSummary):
    spec: dict[str, Any]
    metrics: dict[str, Any] | None = Field(None, description="The metrics report, once succeeded.")


class JobList(BaseModel):
    items: list[JobSummary] = Field(description="Summaries: no spec or metrics (see GET /jobs/{id}).")
    total: int
    limit: int
    offset: int
    next: str | None = Field(None, description="URL of the next page, if any.")


class ArtifactList(BaseModel):
    items: list[ArtifactPublic]


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the offending field, e.g. 'spec.rules.0.amount'.")
    message: str
    type: str | None = None


class Problem(BaseModel):
    """RFC 9457 problem details (served as application/problem+json)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    auth: Literal["enabled", "disabled"] = Field(
        "enabled", description="`disabled` only when the server was started with MCS_AUTH=disabled."
    )
    checks: dict[str, str] = Field(default_factory=dict)
