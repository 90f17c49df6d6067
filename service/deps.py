"""Shared dependencies, named once (the FastAPI full-stack template's `deps.py`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from mcs_common.settings import Settings
from service.auth import LOCAL_PRINCIPAL, Principal, authenticate
from service.dispatch import Dispatcher
from service.errors import Unauthorized
from service.ui_session import authenticate_session


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


def get_dispatcher(request: Request) -> Dispatcher:
    return request.app.state.dispatcher


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]


_bearer = HTTPBearer(auto_error=False, description="A token from `mcs token create`.")

SESSION_COOKIE = "mcs_session"  # the web page's login (service.ui_session), HttpOnly, SameSite=Strict
SAFE_METHODS = frozenset({"GET", "HEAD"})


def session_token(request: Request) -> str | None:
    """The web page's session cookie, honoured only where it cannot change anything: on GET and HEAD, and
    only when the request carries no Authorization header (a header, even a wrong one, always decides)."""
    if request.method not in SAFE_METHODS or "authorization" in request.headers:
        return None
    return request.cookies.get(SESSION_COOKIE) or None


def get_principal(
    request: Request,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Who calls: a live token's principal, or the local principal when auth is disabled; else 401.

    The token comes from `Authorization: Bearer`, or, for reads only, from the web page's cookie, so a
    signed-in browser can follow artifact links; a cookie never authorizes a POST or a DELETE."""
    if not settings.auth_enabled:
        return LOCAL_PRINCIPAL
    cookie = session_token(request) if credentials is None else None
    if credentials is None and cookie is None:
        raise Unauthorized("a bearer token is required: `Authorization: Bearer <token>` (mcs token create)")
    with request.app.state.sessions() as session:
        if credentials is not None:
            principal = authenticate(session, f"Bearer {credentials.credentials}")
        else:
            principal = authenticate_session(session, request.app.state.session_key, cookie)
    if principal is None:
        raise Unauthorized(
            "the bearer token is unknown or revoked"
            if credentials is not None
            else "the web page's session has expired; sign in again"
        )
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]
