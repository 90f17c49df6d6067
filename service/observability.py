"""What an operator watches: `/metrics` in the Prometheus text format, and a request context (request id,
job id) for every log line of a request.

Everything about jobs is computed from the database at scrape time, not counted in the process that saw
it happen: workers are other processes, often on other machines, so in-process counters (or
prometheus_client's multiprocess mode, which needs one shared directory per machine and a scrape target
per worker) would miss what happened elsewhere, lose what a killed worker counted, and disagree between
API replicas. The database is already the record of truth; a few GROUP BY queries over indexed columns
give every replica the same, restart-proof numbers. Only the upload bytes are counted in-process (they
pass through this process and nowhere else).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Float, case, cast, func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from compression_core.methods import method_label
from mcs_common.logs import job_id_var, request_id_var
from mcs_common.models import FINISHED_STATES, Job, JobState, utcnow
from mcs_common.settings import Settings
from service.deps import SettingsDep, _bearer, get_principal
from service.errors import Forbidden

log = logging.getLogger(__name__)

DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")  # kombu's redis priority_steps 0,3,6,9
_JOB_PATH = re.compile(r"^/(?:ui/)?jobs/([0-9a-fA-F-]{36})(?:/|$)")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def main_method(spec: dict[str, Any]) -> str:
    """A job's method for the duration histogram, from the method registry: the spec's whole-model methods
    and step types in first-use order, e.g. `prune+quantize`, `lowrank` or `lc+prune+lowrank` (a handful of
    values, so a label of bounded cardinality)."""
    return method_label(spec)


def _duration_seconds(dialect: str) -> Any:
    if dialect == "postgresql":
        return func.extract("epoch", Job.finished_at - Job.started_at)
    return (func.julianday(Job.finished_at) - func.julianday(Job.started_at)) * 86400.0  # SQLite


class JobCollector(Collector):
    """Reads jobs, queues and worker leases at scrape time (see the module docstring for why)."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self.settings, self.sessions = settings, sessions
        self._redis: Any = None

    def collect(self) -> Iterator[Metric]:
        with self.sessions() as session:
            yield self._jobs(session)
            yield self._durations(session)
            yield from self._queues(session)
            yield from self._workers(session)

    def _jobs(self, session: Session) -> Metric:
        gauge = GaugeMetricFamily(
            "mcs_jobs", "Jobs by state and queue (from the database).", labels=["state", "queue"]
        )
        # every series exists, even at zero
        counts: dict[tuple[str, str], int] = {(s.value, q): 0 for s in JobState for q in ("cpu", "gpu")}
        for state, queue, count in session.execute(
            select(Job.state, Job.queue, func.count()).group_by(Job.state, Job.queue)
        ):
            counts[(str(state), str(queue))] = int(count)
        for (state, queue), count in sorted(counts.items()):
            gauge.add_metric([state, queue], count)
        return gauge

    def _durations(self, session: Session) -> Metric:
        duration = cast(_duration_seconds(session.get_bind().dialect.name), Float)
        columns = [func.count(), func.coalesce(func.sum(duration), 0.0)] + [
            func.sum(case((duration <= bound, 1), else_=0)) for bound in DURATION_BUCKETS
        ]
        rows = session.execute(
            select(Job.method, Job.state, *columns)
            .where(Job.state.in_(FINISHED_STATES), Job.started_at.is_not(None), Job.finished_at.is_not(None))
            .group_by(Job.method, Job.state)
        )
        family = HistogramMetricFamily(
            "mcs_job_duration_seconds",
            "Run time of finished jobs (first start to finish) by the spec's method and the final state.",
            labels=["method", "state"],
        )
        for method, state, count, total, *cumulative in rows:
            buckets = [(repr(b), int(c or 0)) for b, c in zip(DURATION_BUCKETS, cumulative, strict=True)]
            family.add_metric(
                [str(method or "unknown"), str(state)], [*buckets, ("+Inf", int(count))], float(total or 0.0)
            )
        return family

    def _queues(self, session: Session) -> Iterable[Metric]:
        depth = GaugeMetricFamily(
            "mcs_queue_depth",
            "Messages waiting in each broker queue (Redis LLEN); on the embedded filesystem broker, the "
            "jobs queued in the database.",
            labels=["queue", "source"],
        )
        up = GaugeMetricFamily("mcs_broker_up", "1 when the broker answered this scrape.")
        names = {key: self.settings.queue_name(key) for key in ("cpu", "gpu")}
        broker = self.settings.effective_broker_url
        if broker.startswith(("redis://", "rediss://", "unix://")):
            try:
                client = self._redis_client(broker)
                with client.pipeline() as pipe:
                    for name in names.values():
                        for suffix in PRIORITY_SUFFIXES:
                            pipe.llen(name + suffix)
                    lengths = pipe.execute()
                per_queue = len(PRIORITY_SUFFIXES)
                for index, name in enumerate(names.values()):
                    depth.add_metric(
                        [name, "broker"], sum(lengths[index * per_queue : (index + 1) * per_queue])
                    )
                up.add_metric([], 1)
            except Exception as exc:  # noqa: BLE001 - a broker down is a value, not a failed scrape
                log.warning("metrics: the broker did not answer: %r", exc)
                up.add_metric([], 0)
            return [depth, up]
        queued = dict(
            session.execute(
                select(Job.queue, func.count()).where(Job.state == JobState.queued).group_by(Job.queue)
            ).all()
        )
        for key, name in names.items():
            depth.add_metric([name, "database"], int(queued.get(key, 0)))
        return [depth]

    def _redis_client(self, url: str) -> Any:
        if self._redis is None:
            import redis

            self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        return self._redis

    def _workers(self, session: Session) -> Iterable[Metric]:
        """A worker renews the lease of the job it runs every lease/3 s: the newest renewal of each worker
        (its lease owner less the per-job suffix) is its last heartbeat. Idle workers hold no lease and do
        not appear here; Flower lists them."""
        now = utcnow()
        rows = session.execute(
            select(Job.lease_owner, func.max(Job.lease_expires_at))
            .where(Job.state == JobState.running, Job.lease_owner.is_not(None))
            .group_by(Job.lease_owner)
        ).all()
        latest: dict[str, Any] = {}
        for owner, expires in rows:
            if expires is None:
                continue
            worker = str(owner).rsplit(":", 1)[0]
            latest[worker] = max(expires, latest.get(worker, expires))
        age = GaugeMetricFamily(
            "mcs_worker_heartbeat_age_seconds",
            "Seconds since each busy worker last renewed a job's lease (host:pid).",
            labels=["worker"],
        )
        lease = timedelta(seconds=self.settings.lease_s)
        for worker, expires in sorted(latest.items()):
            age.add_metric([worker], max(0.0, (now - (expires - lease)).total_seconds()))
        live = GaugeMetricFamily(
            "mcs_workers_live", "Workers holding an unexpired lease (running a job and heart-beating)."
        )
        live.add_metric([], sum(1 for expires in latest.values() if expires > now))
        return [age, live]


class Observability:
    """The per-app registry: one per `create_app`, so several apps in one process never collide."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(JobCollector(settings, sessions))
        self.upload_bytes = Counter(
            "mcs_upload_bytes",
            "Bytes received in POST /jobs bodies (accepted or not).",
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class RequestContextMiddleware:
    """Sets the request id (the client's `X-Request-ID` if sane, else a new one; echoed in the response)
    and the job id of paths under /jobs/<id> for every log line of the request, and counts upload bytes."""

    def __init__(self, app: ASGIApp, observability: Observability) -> None:
        self.app, self.observability = app, observability

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        match = _JOB_PATH.match(scope.get("path", ""))
        request_token = request_id_var.set(request_id)
        job_token = job_id_var.set(match.group(1).lower() if match else None)
        counter = self.observability.upload_bytes
        counting = scope.get("method") == "POST" and scope.get("path", "").rstrip("/") == "/jobs"

        async def receive_counted() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                counter.inc(len(message.get("body", b"")))
            return message

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode())],
                }
            await send(message)

        try:
            await self.app(scope, receive_counted if counting else receive, send_with_id)
        finally:
            job_id_var.reset(job_token)
            request_id_var.reset(request_token)


def require_operator(
    request: Request,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """/metrics is for the operator: an admin token, unless auth is disabled or MCS_METRICS_PUBLIC=1
    (e.g. a Prometheus inside the cluster network that cannot hold a token)."""
    if settings.metrics_public or not settings.auth_enabled:
        return
    principal = get_principal(request, settings, credentials)
    if not principal.admin:
        raise Forbidden("/metrics needs an admin token (mcs token create --admin), or MCS_METRICS_PUBLIC=1")


router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False, dependencies=[Depends(require_operator)])
def metrics(request: Request) -> Response:
    """Prometheus text exposition (scrape with an admin bearer token)."""
    return Response(request.app.state.observability.exposition(), media_type=CONTENT_TYPE_LATEST)


def install(app: FastAPI, settings: Settings, sessions: sessionmaker[Session]) -> None:
    """Add /metrics and the request-context middleware to an app."""
    app.state.observability = Observability(settings, sessions)
    app.add_middleware(RequestContextMiddleware, observability=app.state.observability)
    app.include_router(router)
