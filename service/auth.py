"""Bearer tokens: who is calling, what they may see, and their limits.

A token is 32 random bytes (URL-safe base64, prefixed `mcs_`); only its SHA-256 is stored, so a leaked
database gives no usable token. A high-entropy token needs no slow hash: its SHA-256 cannot be reversed.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mcs_common.models import Token, utcnow

LOCAL_OWNER = "local"  # the owner of jobs submitted while auth is disabled
TOKEN_PREFIX = "mcs_"


@dataclass(frozen=True)
class Principal:
    """The caller of one request. `owner` scopes jobs and idempotency keys."""

    owner: str
    name: str
    admin: bool
    max_concurrent_jobs: int | None = None
    max_upload_bytes: int | None = None
    max_job_seconds: int | None = None


LOCAL_PRINCIPAL = Principal(owner=LOCAL_OWNER, name="local (auth disabled)", admin=True)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(
    session: Session,
    name: str,
    *,
    admin: bool = False,
    max_concurrent_jobs: int | None = None,
    max_upload_bytes: int | None = None,
    max_job_seconds: int | None = None,
) -> tuple[Token, str]:
    """A new token row and the token itself (returned once; only its hash is kept)."""
    for label, value in (
        ("max_concurrent_jobs", max_concurrent_jobs),
        ("max_upload_bytes", max_upload_bytes),
        ("max_job_seconds", max_job_seconds),
    ):
        if value is not None and value <= 0:
            raise ValueError(f"{label} must be positive, got {value}")
    if not name or len(name) > 64:
        raise ValueError("a token name must have 1 to 64 characters")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = Token(
        id=uuid.uuid4(),
        name=name,
        token_hash=hash_token(secret),
        admin=admin,
        max_concurrent_jobs=max_concurrent_jobs,
        max_upload_bytes=max_upload_bytes,
        max_job_seconds=max_job_seconds,
    )
    session.add(row)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise ValueError(f"a token named {name!r} exists already") from exc
    return row, secret


def list_tokens(session: Session) -> list[Token]:
    return list(session.scalars(select(Token).order_by(Token.created_at)))


def revoke_token(session: Session, name_or_id: str) -> Token:
    """Revoke by name or id; the token stops working at the next request."""
    match = [Token.name == name_or_id]
    with contextlib.suppress(ValueError):
        match.append(Token.id == uuid.UUID(name_or_id))
    row = session.scalars(select(Token).where(or_(*match))).first()
    if row is None:
        raise LookupError(f"no token named or with id {name_or_id!r}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.commit()
    return row


def authenticate(session: Session, authorization: str | None) -> Principal | None:
    """The principal for an `Authorization: Bearer ...` header, or None if it names no live token."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    digest = hash_token(token)
    row = session.scalars(select(Token).where(Token.token_hash == digest)).first()
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.token_hash, digest):
        return None
    return principal_of(row)


def principal_of(row: Token) -> Principal:
    """The principal a live token row stands for."""
    return Principal(
        owner=str(row.id),
        name=row.name,
        admin=row.admin,
        max_concurrent_jobs=row.max_concurrent_jobs,
        max_upload_bytes=row.max_upload_bytes,
        max_job_seconds=row.max_job_seconds,
    )
