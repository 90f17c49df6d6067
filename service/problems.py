"""RFC 9457 problem+json for every error: service errors, validation errors, HTTP errors, crashes."""

from __future__ import annotations

import errno
import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from service.errors import ServiceError
from service.schemas import FieldError, Problem

log = logging.getLogger(__name__)
PROBLEM_MEDIA_TYPE = "application/problem+json"

_DESCRIPTIONS = {
    401: "Missing, unknown or revoked bearer token.",
    404: "No such job or artifact.",
    409: "The job is in a state that does not allow this.",
    413: "The upload is over the server's or the token's limit (the detail names it).",
    415: (
        "An uploaded file is not a model input this service reads (.safetensors, a .pth readable with "
        "weights_only, an ONNX graph with its weights inside)."
    ),
    422: "Invalid input; `errors` names each field.",
    429: "A limit of the token is reached (the detail names it, e.g. max_concurrent_jobs).",
    503: "The database or the broker is unreachable.",
    507: "The server's storage is full; nothing was queued.",
}


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each listed status documented with the Problem schema."""
    return {
        code: {"model": Problem, "description": _DESCRIPTIONS.get(code, HTTPStatus(code).phrase)}
        for code in codes
    }


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        problem.model_dump(mode="json", exclude_none=True),
        status_code=problem.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    problem = Problem(
        type=exc.type,
        title=exc.title,
        status=exc.status,
        detail=exc.detail,
        errors=exc.errors,
        instance=request.url.path,
    )
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return problem_response(problem, headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        FieldError(
            field=".".join(str(part) for part in error["loc"]), message=error["msg"], type=error["type"]
        )
        for error in exc.errors()
    ]
    detail = "invalid request: " + ", ".join(error.field for error in errors)
    problem = Problem(
        type="urn:mcs:problem:invalid-request",
        title="Invalid request",
        status=422,
        detail=detail,
        errors=errors,
        instance=request.url.path,
    )
    return problem_response(problem)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    title = HTTPStatus(exc.status_code).phrase
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
    problem = Problem(title=title, status=exc.status_code, detail=detail, instance=request.url.path)
    headers = dict(exc.headers) if exc.headers else {}
    if exc.status_code == 405:  # Starlette names only the first matching route's methods
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return problem_response(problem, headers or None)


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (one path may be split over several routes)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, APIRoute) and route.path_regex.match(request.url.path):
            methods |= route.methods or set()
    return sorted(methods)


async def _crash(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        log.error("storage full on %s %s: %r", request.method, request.url.path, exc)
        full = Problem(
            title="Insufficient Storage",
            status=507,
            detail="the server's storage is full; nothing was queued, try again later",
        )
        return problem_response(full, headers={"Retry-After": "60"})
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    problem = Problem(
        title="Internal Server Error", status=500, detail="an unexpected error; see the server logs"
    )
    return problem_response(problem)


def install(app: FastAPI) -> None:
    """Register the handlers and make the OpenAPI document say problem+json for error responses."""
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _crash)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                for status, response in operation.get("responses", {}).items():
                    content = response.get("content", {})
                    if status.isdigit() and int(status) >= 400 and "application/json" in content:
                        content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
