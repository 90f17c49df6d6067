"""Shared dependencies, named once (the FastAPI full-stack template's `deps.py`)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

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


def require_token(request: Request, settings: SettingsDep) -> None:
    """Auth placeholder: when MCS_API_TOKEN is set, every /jobs call needs `Authorization: Bearer <token>`."""
    if settings.api_token is None:
        return
    expected = f"Bearer {settings.api_token.get_secret_value()}"
    if not secrets.compare_digest(request.headers.get("authorization", ""), expected):
        raise Unauthorized("a valid bearer token is required (MCS_API_TOKEN is set on this server)")
