"""How a job looks over HTTP: the full view (`GET /jobs/{id}`), a listing's summary, a search's trials."""

from __future__ import annotations

from mcs_common.models import Job, JobState
from mcs_common.settings import Settings
from service.schemas import ArtifactPublic, ChildPublic, JobLinks, JobPublic, JobSummary, Progress


def present_child(child: Job) -> ChildPublic:
    trial, metrics = child.trial or {}, child.metrics or {}
    totals, evaluation = metrics.get("totals") or {}, metrics.get("evaluation") or {}
    validation = (metrics.get("search_trial") or {}).get("validation") or {}
    return ChildPublic(
        id=child.id,
        index=child.trial_index or 0,
        state=JobState(child.state),
        label=trial.get("label"),
        parameters=trial.get("parameters") or {},
        ratio=totals.get("ratio"),
        error=(evaluation.get("after") or {}).get("error"),
        validation_error=(validation.get("after") or {}).get("error"),
        agreement=((evaluation.get("after") or {}).get("fidelity") or {}).get("top1_agreement"),
        validation_agreement=((validation.get("after") or {}).get("fidelity") or {}).get("top1_agreement"),
        reason=child.error,
        url=f"/jobs/{child.id}",
    )


def summarize(settings: Settings, job: Job, children: list[Job] | None = None) -> JobSummary:
    """A job as a listing shows it: no spec, no metrics (load it with `list_jobs(..., summaries=True)`)."""
    base = f"/jobs/{job.id}"
    artifacts = [
        ArtifactPublic(
            name=a["name"], size=a["size"], sha256=a["sha256"], url=f"{base}/artifacts/{a['name']}"
        )
        for a in job.artifacts or []
    ]
    return JobSummary(
        id=job.id,
        state=JobState(job.state),
        queue=job.queue,  # type: ignore[arg-type]
        method=job.method,
        progress=Progress(
            stage=job.progress_stage, fraction=job.progress_fraction or 0.0, message=job.progress_message
        ),
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        attempts=job.attempts,
        cancel_requested=job.cancel_requested,
        error=job.error,
        artifacts=artifacts,
        links=JobLinks(self=base, cancel=f"{base}/cancel", artifacts=f"{base}/artifacts"),
        parent_id=job.parent_id,
        children=None if children is None else [present_child(child) for child in children],
    )


def present(settings: Settings, job: Job, children: list[Job] | None = None) -> JobPublic:
    """The public view of a job, with relative links (a search's: with its trials as `children`)."""
    return JobPublic(**dict(summarize(settings, job, children)), spec=job.spec, metrics=job.metrics)
