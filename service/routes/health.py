"""Liveness and readiness: /readyz checks the database and the broker."""

from __future__ import annotations

from fastapi import APIRouter, Request

from mcs_common.db import ping
from service.deps import DispatcherDep, SettingsDep
from service.errors import Unavailable
from service.problems import problem_responses
from service.schemas import FieldError, Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="The process is alive")
def healthz(settings: SettingsDep) -> Health:
    return Health(status="ok", auth=settings.auth)


@router.get(
    "/readyz",
    response_model=Health,
    summary="Database and broker reachable",
    responses=problem_responses(503),
)
def readyz(request: Request, dispatcher: DispatcherDep, settings: SettingsDep) -> Health:
    failures: list[FieldError] = []
    checks: dict[str, str] = {}
    for name, check in (("database", lambda: ping(request.app.state.engine)), ("broker", dispatcher.ping)):
        try:
            check()
            checks[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            failures.append(FieldError(field=name, message=f"{type(exc).__name__}: {exc}"[:300]))
    if failures:
        raise Unavailable("not ready: " + ", ".join(f.field for f in failures) + " unreachable", failures)
    return Health(status="ok", auth=settings.auth, checks=checks)
