"""/jobs: submit, read, list, cancel, delete. Each route parses HTTP and calls `service.jobs`."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from mcs_common.models import JobState
from service import jobs, presenters
from service.deps import DispatcherDep, PrincipalDep, SessionDep, SettingsDep
from service.problems import problem_responses
from service.schemas import JobList, JobPublic
from service.uploads import receive_upload, upload_limit

router = APIRouter(prefix="/jobs", tags=["jobs"])
MAX_OFFSET = 2**31 - 1  # databases take a 64-bit OFFSET at most; no listing gets near this

_file = {"type": "string", "format": "binary"}
UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["model"],
                    "oneOf": [{"required": ["spec"]}, {"required": ["spec_file"]}],  # the spec, once
                    "additionalProperties": False,  # any other part is refused (422)
                    "properties": {
                        "model": {
                            **_file,
                            "description": "The state dict: .safetensors (preferred) or .pth.",
                        },
                        "spec": {"type": "string", "description": "The spec as JSON (see GET /spec/schema)."},
                        "spec_file": {**_file, "description": "The spec as a JSON file, instead of `spec`."},
                        "data": {
                            **_file,
                            "description": "Optional data set, stored for methods that need one.",
                        },
                        "teacher": {
                            **_file,
                            "description": "Optional teacher state dict, used when the spec has `distill`.",
                        },
                        "queue": {"type": "string", "enum": ["cpu", "gpu"], "default": "cpu"},
                    },
                },
                # the parts' media types the service accepts (file names: .safetensors/.pth/.pt/.bin/.ckpt
                # for state dicts, .npz/.safetensors for data; a state dict without a name is sniffed)
                "encoding": {
                    "model": {"contentType": "application/octet-stream"},
                    "teacher": {"contentType": "application/octet-stream"},
                    "data": {"contentType": "application/octet-stream"},
                    "spec_file": {"contentType": "application/json, application/octet-stream"},
                },
            }
        },
    }
}


_JOB_ID = {"job_id": "$response.body#/id"}
# OpenAPI links: where a client (and a stateful tester) goes from a submitted job
JOB_LINKS: dict[str, Any] = {
    "GetJob": {"operationId": "get_job", "parameters": _JOB_ID},
    "CancelJob": {"operationId": "cancel_job", "parameters": _JOB_ID},
    "DeleteJob": {"operationId": "delete_job", "parameters": _JOB_ID},
    "ListArtifacts": {"operationId": "list_artifacts", "parameters": _JOB_ID},
}


@router.post(
    "",
    status_code=202,
    response_model=JobPublic,
    summary="Submit a compression job",
    responses={
        202: {
            "description": "Queued; `Location` names the job.",
            "headers": {"Location": {"schema": {"type": "string"}}},
            "links": JOB_LINKS,
        },
        **problem_responses(401, 413, 415, 422, 429, 503, 507),
    },
    openapi_extra=UPLOAD_BODY,
)
async def submit_job(
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
    principal: PrincipalDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Retry-safe submission: the same key (per token) with the same spec and files "
            "returns the first job; with a different payload, 422. 1 to 255 printable ASCII characters, "
            "no space at either end.",
            min_length=1,
            max_length=255,
            pattern=jobs.IDEMPOTENCY_KEY_PATTERN,
        ),
    ] = None,
) -> JobPublic:
    key = jobs.check_idempotency_key(idempotency_key)
    limit, name = upload_limit(request, settings, principal)
    if key is None:  # a retry with a key must reach its first job even when the limit is reached now
        await run_in_threadpool(jobs.check_concurrency, session, principal)
    staged = await receive_upload(request, settings, limit, name)
    job, _replayed = await run_in_threadpool(
        jobs.create_job, session, settings, dispatcher, staged, principal, key
    )
    response.headers["Location"] = f"/jobs/{job.id}"
    return presenters.present(settings, job)


@router.get(
    "", response_model=JobList, summary="List jobs, newest first", responses=problem_responses(401, 422)
)
def list_jobs(
    session: SessionDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    state: Annotated[JobState | None, Query(description="Only jobs in this state.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> JobList:
    items, total = jobs.list_jobs(session, principal, state=state, limit=limit, offset=offset, summaries=True)
    following = None
    if offset + len(items) < total:
        query = f"limit={limit}&offset={offset + limit}" + (f"&state={state.value}" if state else "")
        following = f"/jobs?{query}"
    return JobList(
        items=[presenters.summarize(settings, job) for job in items],
        total=total,
        limit=limit,
        offset=offset,
        next=following,
    )


@router.get(
    "/{job_id}",
    operation_id="get_job",
    response_model=JobPublic,
    summary="A job's state",
    responses=problem_responses(401, 404, 422),
)
def get_job(
    job_id: uuid.UUID, session: SessionDep, settings: SettingsDep, principal: PrincipalDep
) -> JobPublic:
    job = jobs.get_job(session, job_id, principal)
    return presenters.present(settings, job, jobs.children_of(session, job))


@router.post(
    "/{job_id}/cancel",
    operation_id="cancel_job",
    response_model=JobPublic,
    status_code=202,
    summary="Cancel a job: a queued job never runs, a running one stops at its next check",
    responses=problem_responses(401, 404, 409, 422),
)
def cancel_job(
    job_id: uuid.UUID,
    session: SessionDep,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
    principal: PrincipalDep,
) -> JobPublic:
    job = jobs.cancel_job(session, dispatcher, job_id, principal)
    return presenters.present(settings, job, jobs.children_of(session, job))


@router.delete(
    "/{job_id}",
    operation_id="delete_job",
    status_code=204,
    summary="Delete a finished job and its files",
    responses=problem_responses(401, 404, 409, 422),
)
def delete_job(
    job_id: uuid.UUID, session: SessionDep, settings: SettingsDep, principal: PrincipalDep
) -> Response:
    jobs.delete_job(session, settings, job_id, principal)
    return Response(status_code=204)
