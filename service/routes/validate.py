"""POST /jobs/validate: the preflight of a submission (same multipart as POST /jobs); nothing is queued."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from service.deps import PrincipalDep, SettingsDep
from service.preflight import validate_upload
from service.problems import problem_response, problem_responses
from service.routes.jobs import UPLOAD_BODY
from service.schemas import Problem
from service.uploads import receive_upload, upload_limit

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.post(
    "/validate",
    summary="Check a submission without queueing it: which layers would be pruned or quantized, which cannot",
    responses=problem_responses(401, 413, 415, 422, 503, 507),
    openapi_extra=UPLOAD_BODY,
)
async def validate_job(request: Request, settings: SettingsDep, principal: PrincipalDep) -> dict[str, Any]:
    limit, name = upload_limit(request, settings, principal)
    staged = await receive_upload(request, settings, limit, name)
    return await run_in_threadpool(validate_upload, staged, limit, name)


@router.api_route(
    "/validate",
    methods=["GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"],
    include_in_schema=False,
)
async def validate_other_methods(request: Request) -> JSONResponse:
    """POST only: without this route, GET /jobs/validate would reach GET /jobs/{job_id} and answer 422."""
    problem = Problem(title="Method Not Allowed", status=405, instance=request.url.path)
    return problem_response(problem, {"Allow": "POST"})
