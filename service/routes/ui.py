"""The web page: a job list at `/` and a page per job at `/ui/jobs/{id}`, server-rendered and read-only.

It follows the API's rules: with auth enabled a person signs in once with a token (`mcs token create`);
an HttpOnly, SameSite=Strict cookie (never a URL) then holds a signed, expiring reference to it, not the
token (service/ui_session.py), `Secure` when served over HTTPS, and sees the same jobs the token sees
through the API. The cookie authorizes reads only (see `service.deps.session_token`), so the page's
links to artifacts work and nothing can be changed from another site. Pages carry no scripts: a strict
Content-Security-Policy, Jinja2's autoescaping for every user-controlled string, and a meta refresh.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from compression_core.report.headline import headline, human_bytes
from mcs_common.models import FINISHED_STATES, Job, JobState, utcnow
from mcs_common.settings import Settings
from service import jobs
from service.auth import LOCAL_PRINCIPAL, Principal, authenticate
from service.deps import SESSION_COOKIE, SessionDep, SettingsDep
from service.errors import JobNotFound
from service.ui_session import authenticate_session, issue

router = APIRouter(include_in_schema=False)

HERE = Path(__file__).resolve().parent.parent
TEMPLATES = Environment(
    loader=FileSystemLoader(HERE / "templates"), autoescape=True, undefined=StrictUndefined
)
STYLESHEET = HERE / "static" / "ui.css"
PAGE_SIZE = 50
REFRESH_ACTIVE_S, REFRESH_IDLE_S = 2, 10
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
REPORT = "report.html"


# -- who is looking ---------------------------------------------------------------------------------------


def principal_for(request: Request, token: str | None) -> Principal | None:
    if not token:
        return None
    with request.app.state.sessions() as session:
        return authenticate(session, f"Bearer {token}")


def page_principal(request: Request, settings: Settings) -> Principal | None:
    """The signed-in principal (the local one when auth is disabled), or None: show the login form."""
    if not settings.auth_enabled:
        return LOCAL_PRINCIPAL
    with request.app.state.sessions() as session:
        return authenticate_session(
            session, request.app.state.session_key, request.cookies.get(SESSION_COOKIE)
        )


def served_over_https(request: Request) -> bool:
    """HTTPS here, or at a proxy in front (X-Forwarded-Proto / Forwarded: believed only to add `Secure`,
    which can never weaken the cookie)."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    proto = request.headers.get("forwarded", "").lower().replace(" ", "")
    return request.url.scheme == "https" or forwarded == "https" or "proto=https" in proto


def same_origin(request: Request) -> bool:
    """A form post from this site (login-CSRF guard): browsers send Sec-Fetch-Site and Origin."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


# -- what the templates show ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArtifactView:
    name: str
    url: str
    size: str
    sha256: str


@dataclass(frozen=True)
class TrialView:
    """One trial of a search, as its search's page lists it (the API's `children`)."""

    index: int
    url: str
    state: str
    what: str  # its label, else the parameters it ran with
    ratio: str
    error: str
    validation_error: str
    reason: str


def trial_views(children: list[Job] | None) -> list[TrialView]:
    from service.presenters import present_child

    def percent(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.2f}%"

    views = []
    for child in children or []:
        c = present_child(child)
        what = c.label or ", ".join(f"{k} = {v}" for k, v in c.parameters.items())
        views.append(
            TrialView(
                index=c.index,
                url=f"/ui/jobs/{c.id}",
                state=c.state.value,
                what=what,
                ratio="-" if c.ratio is None else f"{c.ratio:.1f}×",
                error=percent(c.error),
                validation_error=percent(c.validation_error),
                reason=c.reason or "",
            )
        )
    return views


@dataclass(frozen=True)
class JobView:
    id: str
    short_id: str
    url: str
    state: str
    active: bool
    percent: int
    fraction: float
    stage: str
    message: str
    created: datetime
    started: datetime | None
    finished: datetime | None
    queue: str
    attempts: int
    error: str | None
    spec_summary: str
    spec_json: str
    ratio: str | None
    cards: list[tuple[str, str]] = field(default_factory=list)
    artifacts: list[ArtifactView] = field(default_factory=list)
    report_url: str | None = None


def spec_summary(spec: dict[str, Any], limit: int = 90) -> str:
    """One line: each rule's name (or number) and its steps, e.g. `weights: prune+quantize`."""
    parts = []
    model = spec.get("model")
    if isinstance(model, dict) and model.get("arch"):
        parts.append(str(model["arch"]))
    for index, rule in enumerate(spec.get("rules") or []):
        if not isinstance(rule, dict):
            continue
        steps = "+".join(str(s.get("type", "?")) for s in rule.get("steps") or [] if isinstance(s, dict))
        parts.append(f"{rule.get('name') or f'rule #{index}'}: {steps or 'keep'}")
    text = "; ".join(parts) or "(no rules)"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _cards(metrics: dict[str, Any] | None) -> list[tuple[str, str]]:
    if not metrics:
        return []
    h = headline(metrics)
    totals = metrics.get("totals") if isinstance(metrics.get("totals"), dict) else {}
    cards = [
        ("ratio", f"{h.ratio:.1f}×" if h.ratio else "-"),
        ("size", f"{human_bytes(h.size_before_bytes)} → {human_bytes(h.size_after_bytes)}"),
    ]
    bits = totals.get("bits_per_weight") if isinstance(totals, dict) else None
    if isinstance(bits, int | float):
        cards.append(("bits / weight", f"{bits:.2f}"))
    if h.params_total is not None:
        nonzero = f"{h.params_nonzero:,.0f} of " if h.params_nonzero is not None else ""
        cards.append(("non-zero weights", f"{nonzero}{h.params_total:,.0f}"))
    if h.error_before is not None and h.error_after is not None:
        cards.append(("error", f"{100 * h.error_before:.2f}% → {100 * h.error_after:.2f}%"))
    if h.agreement_after is not None:  # fidelity to the upload (issue 19): jobs without labels
        cards.append(("top-1 agreement with the upload", f"{100 * h.agreement_after:.2f}%"))
    return cards


def job_view(job: Job) -> JobView:
    base = f"/jobs/{job.id}"
    artifacts = [
        ArtifactView(a["name"], f"{base}/artifacts/{a['name']}", human_bytes(a["size"]), a["sha256"])
        for a in job.artifacts or []
    ]
    state = JobState(job.state)
    fraction = 1.0 if state == JobState.succeeded else min(1.0, max(0.0, job.progress_fraction or 0.0))
    h = headline(job.metrics) if job.metrics else None
    return JobView(
        id=str(job.id),
        short_id=str(job.id)[:8],
        url=f"/ui/jobs/{job.id}",
        state=state.value,
        active=state not in FINISHED_STATES,
        percent=round(100 * fraction),
        fraction=fraction,
        stage=job.progress_stage or "",
        message=job.progress_message or "",
        created=job.created_at,
        started=job.started_at,
        finished=job.finished_at,
        queue=job.queue,
        attempts=job.attempts,
        error=job.error,
        spec_summary=spec_summary(job.spec or {}),
        spec_json=json.dumps(job.spec, indent=2, sort_keys=False),
        ratio=f"{h.ratio:.1f}×" if h is not None and h.ratio else None,
        cards=_cards(job.metrics),
        artifacts=artifacts,
        report_url=next((a.url for a in artifacts if a.name == REPORT), None),
    )


def ago(when: datetime | None) -> str:
    """`12 s ago`, `3 min ago`, `5 h ago`, `2 d ago`."""
    if when is None:
        return "-"
    seconds = max(0, int((utcnow() - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def utc(when: datetime | None) -> str:
    return "-" if when is None else when.strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return "-"
    seconds = ((end or utcnow()) - start).total_seconds()
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


TEMPLATES.filters.update(ago=ago, utc=utc)
TEMPLATES.globals.update(duration=duration)


def render(
    template: str, request: Request, settings: Settings, status: int = 200, **context: Any
) -> HTMLResponse:
    principal = context.pop("principal", None)
    body = TEMPLATES.get_template(template).render(
        auth_enabled=settings.auth_enabled,
        principal=principal,
        base_url=str(request.base_url).rstrip("/"),
        refresh=context.pop("refresh", None),
        **context,
    )
    return HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)


def to_login(reason: str | None = None) -> RedirectResponse:
    target = "/ui/login" + (f"?{urlencode({'reason': reason})}" if reason else "")
    return RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})


# -- routes -----------------------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def jobs_page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    state: Annotated[JobState | None, Query()] = None,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> Response:
    principal = page_principal(request, settings)
    if principal is None:
        return to_login("expired" if request.cookies.get(SESSION_COOKIE) else None)
    items, total = jobs.list_jobs(session, principal, state=state, limit=PAGE_SIZE, offset=offset)
    views = [job_view(job) for job in items]

    def page(at: int) -> str:
        query = {"offset": at} | ({"state": state.value} if state else {})
        return "/?" + urlencode(query)

    return render(
        "jobs.html",
        request,
        settings,
        principal=principal,
        jobs=views,
        total=total,
        first=offset + 1,
        last=offset + len(views),
        newer=page(max(0, offset - PAGE_SIZE)) if offset > 0 else None,
        older=page(offset + PAGE_SIZE) if offset + len(views) < total else None,
        state=state.value if state else None,
        states=[s.value for s in JobState],
        refresh=REFRESH_ACTIVE_S if any(v.active for v in views) else REFRESH_IDLE_S,
    )


@router.get("/ui/jobs/{job_id}", response_class=HTMLResponse)
def job_page(job_id: str, request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    principal = page_principal(request, settings)
    if principal is None:
        return to_login("expired" if request.cookies.get(SESSION_COOKIE) else None)
    try:
        job = jobs.get_job(session, uuid.UUID(job_id), principal)
    except (ValueError, JobNotFound):
        return render("missing.html", request, settings, status=404, principal=principal, job_id=job_id)
    view = job_view(job)
    return render(
        "job.html",
        request,
        settings,
        principal=principal,
        job=view,
        trials=trial_views(jobs.children_of(session, job)),  # a search's trials, each with its own page
        refresh=REFRESH_ACTIVE_S if view.active else None,
    )


REASONS = {
    "expired": "Your session's token is no longer valid (revoked?). Sign in again.",
    "signed-out": "Signed out.",
}


@router.get("/ui/login", response_class=HTMLResponse)
def login_page(request: Request, settings: SettingsDep, reason: str | None = None) -> Response:
    if not settings.auth_enabled:
        return RedirectResponse("/", status_code=303)
    return render("login.html", request, settings, note=REASONS.get(reason or ""), error=None)


@router.post("/ui/login", response_class=HTMLResponse)
async def login(request: Request, settings: SettingsDep) -> Response:
    """Check the token, then keep it in a cookie the page's scripts cannot read (there are none anyway)."""
    if not settings.auth_enabled:
        return RedirectResponse("/", status_code=303)
    if not same_origin(request):
        return render(
            "login.html", request, settings, status=403, note=None, error="Cross-site sign-in refused."
        )
    form = await request.form(max_files=0, max_fields=4)
    token = str(form.get("token") or "").strip()
    principal = principal_for(request, token)
    if principal is None:
        error = "That token is unknown or revoked. Create one with `mcs token create --name NAME`."
        return render("login.html", request, settings, status=401, note=None, error=error)
    response = RedirectResponse("/", status_code=303, headers={"Cache-Control": "no-store"})
    response.set_cookie(  # a signed reference to the token, never the token (service.ui_session)
        SESSION_COOKIE,
        issue(request.app.state.session_key, principal, token),
        httponly=True,
        samesite="strict",
        secure=served_over_https(request),
        path="/",
    )
    return response


@router.post("/ui/logout")
def logout(request: Request) -> Response:
    if not same_origin(request):  # a cross-site form must not sign the user out
        return Response("Cross-site sign-out refused.", status_code=403, media_type="text/plain")
    response = to_login("signed-out")
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/ui/static/ui.css")
def stylesheet() -> FileResponse:
    return FileResponse(STYLESHEET, media_type="text/css", headers={"Cache-Control": "max-age=300"})
