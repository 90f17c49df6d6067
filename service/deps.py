"""Shared dependencies, named once (the FastAPI full-stack template's `deps.py`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from service.auth import LOCAL_PRINCIPAL, Principal, authenticate
from service.dispatch import Dispatcher
from service.errors import Unauthorized
from service.settings import Settings


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


def get_principal(
    request: Request,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Who calls: a live token's principal, or the local principal when auth is disabled; else 401."""
    if not settings.auth_enabled:
        return LOCAL_PRINCIPAL
    if credentials is None:
        raise Unauthorized("a bearer token is required: `Authorization: Bearer <token>` (mcs token create)")
    with request.app.state.sessions() as session:
        principal = authenticate(session, f"Bearer {credentials.credentials}")
    if principal is None:
        raise Unauthorized("the bearer token is unknown or revoked")
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]
