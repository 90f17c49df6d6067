"""The web page's session cookie: a signed, expiring reference to a token, never the token itself.

The cookie was the bearer token (issue 21, item 9): whoever read it (a proxy log, a shared browser profile)
held a credential that submits and deletes jobs, forever. Now it is `<token id>.<issued>.<mac>`, the MAC an
HMAC-SHA256 over the three and the token's stored hash under a key only the server knows: it names a live
token, it opens what the cookie always opened (pages and reads, `service.deps`), it is never a bearer token,
it lapses after SESSION_MAX_AGE_S and with its token (revoked, or the row gone).

The key is `MCS_SESSION_SECRET` when set (API replicas that do not share a data dir need it), else 32
random bytes kept in `<data dir>/ui-session.key` (mode 0600), created once by whichever process is first.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import time
import uuid
from pathlib import Path

from sqlalchemy.orm import Session

from mcs_common.models import Token
from mcs_common.settings import Settings
from service.auth import Principal, hash_token, principal_of

SESSION_MAX_AGE_S = 12 * 3600
KEY_FILE = "ui-session.key"
_CLOCK_SKEW_S = 300


def session_key(settings: Settings) -> bytes:
    """The key cookies are signed with (see the module docstring)."""
    if settings.session_secret is not None:
        return hashlib.sha256(settings.session_secret.get_secret_value().encode("utf-8")).digest()
    path = settings.data_dir / KEY_FILE
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        key = _create_key(path)
    if len(key) != 32:
        raise RuntimeError(f"{path} is not a 32-byte key; delete it to make a new one (signs everyone out)")
    return key


def _create_key(path: Path) -> bytes:
    """Write a new key under a temporary name and link it in: of two processes racing, one key wins and
    both read it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{KEY_FILE}.{uuid.uuid4().hex}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(secrets.token_bytes(32))
        with contextlib.suppress(FileExistsError):  # another process was first: use its key
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path.read_bytes()


def _mac(key: bytes, token_id: str, issued: int, token_hash: str) -> str:
    message = f"mcs-ui-session|{token_id}|{issued}|{token_hash}".encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def issue(key: bytes, principal: Principal, token: str, now: float | None = None) -> str:
    """The cookie value for a principal just authenticated with `token`."""
    issued = int(time.time() if now is None else now)
    return f"{principal.owner}.{issued}.{_mac(key, principal.owner, issued, hash_token(token))}"


def authenticate_session(
    session: Session, key: bytes, value: str | None, now: float | None = None
) -> Principal | None:
    """The principal a cookie value stands for, or None (malformed, forged, expired, token revoked)."""
    parts = (value or "").split(".")
    if len(parts) != 3 or len(value or "") > 200 or not parts[1].isdigit():
        return None
    token_id, issued, mac = parts[0], int(parts[1]), parts[2]
    age = (time.time() if now is None else now) - issued
    if not -_CLOCK_SKEW_S <= age <= SESSION_MAX_AGE_S:
        return None
    try:
        row = session.get(Token, uuid.UUID(token_id))
    except ValueError:
        return None
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(mac, _mac(key, token_id, issued, row.token_hash)):
        return None
    return principal_of(row)
