"""With auth disabled the API trusts whoever reaches it, so it must be reached only by this machine's own
clients, never by a web page (issue 10, item 7):

- DNS rebinding: a page on `attacker.example` whose name resolves to 127.0.0.1 talks to the API with
  `Host: attacker.example`; every request whose Host is not a loopback name (or the configured bind
  address, for `--insecure` setups) is refused with 421.
- Cross-site requests: a page on another origin (another local port included) can send a no-cors
  multipart POST; a state-changing request whose `Sec-Fetch-Site` is not same-origin/none, or whose
  `Origin` is not the API's own, is refused with 403. Command-line clients send neither header.
With auth enabled, bearer tokens are not sent by browsers on their own, and the page's cookie is
SameSite=strict; the page's own forms check the origin themselves (`service.routes.ui.same_origin`).
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcs_common.settings import Settings, is_loopback

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def host_name(host: str) -> str:
    """The name part of a Host header: `[::1]:8000` -> `::1`, `localhost:80` -> `localhost`."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def cross_site(headers: dict[str, str]) -> bool:
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return True
    origin = headers.get("origin")
    if origin is None:
        return False
    return origin == "null" or urlsplit(origin).netloc.lower() != headers.get("host", "").lower()


class NoSniff:
    """`X-Content-Type-Options: nosniff` on every response: a download or JSON body is never run as a
    script or page because a browser guessed its type."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"x-content-type-options"]
                message = {**message, "headers": [*headers, (b"x-content-type-options", b"nosniff")]}
            await send(message)

        await self.app(scope, receive, send_with_header)


class SiteGuard:
    """ASGI middleware applying the two rules above when auth is disabled."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.settings.auth_enabled:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        name = host_name(headers.get("host", "")).lower()
        if not (name.endswith(".localhost") or is_loopback(name) or name == self.settings.host.lower()):
            await _refuse(
                send,
                421,
                "Host not allowed",
                f"with auth disabled this API answers only loopback names (not {name!r})",
            )
            return
        if scope["method"] not in SAFE_METHODS and cross_site(headers):
            await _refuse(
                send,
                403,
                "Cross-site request refused",
                "with auth disabled, state-changing requests must come from this origin",
            )
            return
        await self.app(scope, receive, send)


async def _refuse(send: Send, status: int, title: str, detail: str) -> None:
    body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail}).encode()
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-content-type-options", b"nosniff"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
