"""POST /jobs/validate: the preflight of a submission (same multipart as POST /jobs); nothing is queued."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from service.deps import PrincipalDep, SettingsDep
from service.errors import PayloadTooLarge
from service.preflight import validate_upload
from service.problems import problem_responses
from service.routes.jobs import UPLOAD_BODY
from service.uploads import stream_upload

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.post(
    "/validate",
    summary="Check a submission without queueing it: which layers would be pruned or quantized, which cannot",
    responses=problem_responses(401, 413, 415, 422),
    openapi_extra=UPLOAD_BODY,
)
async def validate_job(request: Request, settings: SettingsDep, principal: PrincipalDep) -> dict[str, Any]:
    limit, name = settings.max_upload_bytes, "MCS_MAX_UPLOAD_BYTES"
    if principal.max_upload_bytes is not None and principal.max_upload_bytes < limit:
        limit, name = principal.max_upload_bytes, f"max_upload_bytes of token {principal.name!r}"
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the upload ({declared} bytes) is over the limit {name}={limit} bytes")
    staged = await stream_upload(
        request.headers.get("content-type", ""),
        request.stream(),
        settings.staging_dir,
        max_bytes=limit,
        max_field_bytes=settings.max_field_bytes,
        limit_name=name,
    )
    return await run_in_threadpool(validate_upload, staged)
