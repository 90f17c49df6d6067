"""/jobs/{id}/artifacts: list and download, with SHA-256 ETags (If-None-Match gives 304); HEAD gives a
download's headers (ETag, length, type) without its body, so a CI step can check a file before fetching it."""

from __future__ import annotations

import uuid
from enum import StrEnum
from pathlib import Path

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import FileResponse, StreamingResponse

from mcs_common.s3 import ObjectStream
from mcs_common.storage import ARTIFACT_MEDIA_TYPES, ARTIFACT_NAMES
from service import jobs, presenters
from service.deps import PrincipalDep, SessionDep, SettingsDep
from service.problems import problem_responses
from service.schemas import ArtifactList

router = APIRouter(prefix="/jobs/{job_id}/artifacts", tags=["artifacts"])

HTML_ARTIFACT_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox",
    "X-Content-Type-Options": "nosniff",
}
_BINARY = {"schema": {"type": "string", "format": "binary"}}
# each media type an artifact is served with (mcs_common.storage.ARTIFACT_MEDIA_TYPES), without parameters
ARTIFACT_CONTENT = {
    media.split(";")[0]: {"schema": {"type": "object"}} if media == "application/json" else _BINARY
    for media in dict.fromkeys(ARTIFACT_MEDIA_TYPES.values())
}
ArtifactName = StrEnum("ArtifactName", {name.replace(".", "_"): name for name in ARTIFACT_NAMES})  # type: ignore[misc]


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


@router.get(
    "",
    operation_id="list_artifacts",
    response_model=ArtifactList,
    summary="A job's artifacts",
    responses=problem_responses(401, 404, 422),
)
def list_artifacts(
    job_id: uuid.UUID, session: SessionDep, settings: SettingsDep, principal: PrincipalDep
) -> ArtifactList:
    return ArtifactList(
        items=presenters.present(settings, jobs.get_job(session, job_id, principal)).artifacts
    )


@router.get(
    "/{name}",
    summary="Download an artifact",
    response_class=FileResponse,
    responses={
        200: {
            "description": "The file, streamed; ETag is its quoted SHA-256.",
            "content": ARTIFACT_CONTENT,
        },
        304: {"description": "Not modified (If-None-Match matched the ETag)."},
        **problem_responses(401, 404, 422),
    },
)
def download_artifact(
    request: Request,
    job_id: uuid.UUID,
    name: ArtifactName,
    session: SessionDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    if_none_match: str | None = Header(None),
) -> Response:
    location, record = jobs.find_artifact(settings, jobs.get_job(session, job_id, principal), name.value)
    etag = f'"{record["sha256"]}"'
    if _matches(if_none_match, etag):
        if not isinstance(location, Path):
            location.body.close()
        return Response(status_code=304, headers={"ETag": etag})
    media_type, headers, disposition = ARTIFACT_MEDIA_TYPES[name.value], {"ETag": etag}, "attachment"
    if media_type.startswith("text/html"):  # report.html opens in the browser, sandboxed: no scripts,
        headers.update(HTML_ARTIFACT_HEADERS)  # no requests, an origin of its own
        disposition = "inline"
    if not isinstance(location, Path):  # MCS_STORAGE=s3: streamed through the API (see stream_object)
        if request.method == "HEAD":  # the headers only: the object is not read
            location.body.close()
            return Response(
                headers=_stream_headers(location, name.value, headers, disposition), media_type=media_type
            )
        return stream_object(location, media_type, name.value, headers, disposition)
    return FileResponse(
        location,
        media_type=media_type,
        filename=name.value,
        headers=headers,
        content_disposition_type=disposition,
    )


# HEAD on a download (RFC 9110 asks for it wherever GET is): the same handler, kept out of the OpenAPI
# document, whose operations and links are the GET ones clients are generated from
router.add_api_route("/{name}", download_artifact, methods=["HEAD"], include_in_schema=False)


def stream_object(
    stream: ObjectStream,
    media_type: str,
    filename: str,
    headers: dict[str, str],
    disposition: str = "attachment",
) -> StreamingResponse:
    """An artifact from the bucket, streamed by the API rather than redirected to a presigned URL: the
    client keeps one URL, one token and one host (the bucket may be reachable only inside the cluster),
    and the ETag/SHA-256 contract holds as for local files."""
    headers = _stream_headers(stream, filename, headers, disposition)
    return StreamingResponse(stream.chunks(), media_type=media_type, headers=headers)


def _stream_headers(
    stream: ObjectStream, filename: str, headers: dict[str, str], disposition: str
) -> dict[str, str]:
    return {
        **headers,
        "Content-Length": str(stream.size),
        "Content-Disposition": f'{disposition}; filename="{filename}"',
    }
