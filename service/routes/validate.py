"""POST /jobs/validate: the preflight of a submission (same multipart as POST /jobs); nothing is queued."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from service.deps import PrincipalDep, SettingsDep
from service.preflight import validate_upload
from service.problems import problem_responses
from service.routes.jobs import UPLOAD_BODY
from service.uploads import receive_upload, upload_limit

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.post(
    "/validate",
    summary="Check a submission without queueing it: which layers would be pruned or quantized, which cannot",
    responses=problem_responses(401, 413, 415, 422),
    openapi_extra=UPLOAD_BODY,
)
async def validate_job(request: Request, settings: SettingsDep, principal: PrincipalDep) -> dict[str, Any]:
    limit, name = upload_limit(request, settings, principal)
    staged = await receive_upload(request, settings, limit, name)
    return await run_in_threadpool(validate_upload, staged)
