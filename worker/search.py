"""Outer jobs (a search) over the workers: the parent plans a round, inserts its children (a search's
trials) as ordinary child jobs, sends them and returns; it never waits for them (with one worker, as in
embedded `mcs serve`, that would deadlock). When a child ends, its worker checks whether the round is
complete and, if so, sends `mcs.advance_search` for the parent. Each round is claimed through the parent's
row (a conditional UPDATE, like a job's lease), and (parent_id, trial_index) is unique, so duplicate
deliveries plan nothing twice. What to run and the outcome come from the registered outer method's driver
(`compression_core.methods.outer`), whichever method it is; this module only wires it to rows.

Between rounds the parent is `running` with no lease owner (progress stage: the method's field, e.g.
`search`); the API's reaper sends a continuation for a parent whose children all ended but which nobody
advanced (a lost message).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from mcs_common import storage
from mcs_common.models import FINISHED_STATES, Job, JobState, cancel_children, utcnow
from mcs_common.settings import Settings
from mcs_common.storage import ARTIFACT_NAMES, OPTIONAL_ARTIFACTS, job_dir, publish
from worker.report import write_report
from worker.store import Heartbeat, Lease, take_lease

if TYPE_CHECKING:
    from compression_core.methods.outer import Child, ChildPlan, OuterDriver

log = logging.getLogger(__name__)

CHECKPOINTS = ("model.hf.tar", "model.quantized.tar")  # a Hugging Face model's outputs (issue 23)


def is_outer(spec: dict[str, Any]) -> bool:
    """Whether the spec names an outer method (a search): the job plans children instead of running."""
    from compression_core.methods.outer import outer_method

    return outer_method(spec) is not None


def _driver(spec: dict[str, Any]) -> OuterDriver:
    from compression_core.methods.outer import driver_for

    driver = driver_for(spec)
    assert driver is not None, "not an outer job"
    return driver


def _field(spec: dict[str, Any]) -> str:
    from compression_core.methods.outer import outer_method

    method = outer_method(spec)
    assert method is not None, "not an outer job"
    return method.name


def claim_round(
    factory: sessionmaker[Session], job_id: uuid.UUID, owner: str, seconds: float
) -> Lease | None:
    """Take a waiting search (running, no live lease, not cancelled) for one planning step; no attempt is
    counted: a round is not a delivery of the job."""
    now = utcnow()
    with factory() as session:
        result = session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.state == JobState.running,
                Job.cancel_requested.is_(False),
                or_(
                    Job.lease_owner.is_(None),
                    and_(Job.lease_expires_at.is_not(None), Job.lease_expires_at < now),
                ),
            )
            .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=seconds), updated_at=now)
        )
        session.commit()
    return Lease(factory, job_id, owner, seconds) if result.rowcount else None  # type: ignore[attr-defined]


def release(lease: Lease, **values: Any) -> bool:
    """Back to waiting: still running, held by nobody, so the next round's claim can take it."""
    return lease._update(lease_owner=None, lease_expires_at=None, **values)


def free_slots(settings: Settings, queue: str) -> int:
    """How many trials to run at once: MCS_SEARCH_SLOTS, else the pool sizes of the workers consuming the
    queue (Celery inspect, 2 x 0.5 s), else 1."""
    if settings.search_slots is not None:
        return settings.search_slots
    from worker.app import app

    name = settings.queue_name(queue)
    try:
        inspector = app.control.inspect(timeout=0.5)
        queues = inspector.active_queues() or {}
        stats = inspector.stats() or {}
    except Exception:  # noqa: BLE001 - a broker without broadcast support: one at a time
        log.info("could not inspect the workers; planning one trial per round", exc_info=True)
        return 1
    total = 0
    for worker, consumed in queues.items():
        if any(q.get("name") == name for q in consumed):
            total += int(((stats.get(worker) or {}).get("pool") or {}).get("max-concurrency") or 1)
    return max(1, total)


def as_child(child: Job) -> Child:
    """A child job's row as the outer method's driver sees it."""
    from compression_core.methods.outer import Child

    seconds = None
    if child.started_at is not None and child.finished_at is not None:
        seconds = (child.finished_at - child.started_at).total_seconds()
    return Child(
        int(child.trial_index or 0),
        dict(child.trial or {}),
        str(child.state),
        child.metrics if child.state == JobState.succeeded else None,
        seconds=seconds,
        job_id=str(child.id),
        reason=child.error or (None if child.state == JobState.succeeded else str(child.state)),
    )


def _link_inputs(settings: Settings, parent: Job, child_id: uuid.UUID) -> None:
    """The child's inputs are the parent's files: hard links (a copy across filesystems)."""
    source, target = job_dir(settings, parent.id), job_dir(settings, child_id)
    for relative in parent.inputs.values():
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source / relative, target / relative)
        except OSError:
            shutil.copyfile(source / relative, target / relative)
    storage.store_inputs(settings, child_id)  # MCS_STORAGE=s3: into the bucket


def next_trial_index(children: Sequence[Job]) -> int:
    """The first index of the next round: after the highest recorded trial (not the count of trials:
    with a row missing, the count names a trial that exists and the round would collide with it)."""
    return max((int(c.trial_index) for c in children if c.trial_index is not None), default=-1) + 1


def insert_children(
    settings: Settings,
    factory: sessionmaker[Session],
    parent: Job,
    first_index: int,
    planned: Sequence[ChildPlan],
) -> tuple[bool, list[tuple[uuid.UUID, str, int | None]]]:
    """One transaction for the whole round: all children exist or none. Returns whether this call
    inserted them, and the children still queued (a round another continuation inserted first: to send
    them again)."""
    from compression_core.methods import method_label

    rows = []
    for offset, trial in enumerate(planned):
        child = Job(
            id=uuid.uuid4(),
            state=JobState.queued,
            queue=parent.queue,
            spec=trial.spec,
            inputs=dict(parent.inputs),
            owner=parent.owner,
            time_limit_s=parent.time_limit_s,
            method=method_label(trial.spec),
            parent_id=parent.id,
            trial_index=first_index + offset,
            trial=trial.record,
        )
        _link_inputs(settings, parent, child.id)
        rows.append(child)
    inserted = True
    with factory() as session:
        session.add_all(rows)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            inserted = False
            for row in rows:
                storage.remove_job_files(settings, row.id)
            log.info("search %s: round from trial %d already planned", parent.id, first_index)
    with factory() as session:
        queued = session.execute(
            select(Job.id, Job.queue, Job.time_limit_s).where(
                Job.parent_id == parent.id, Job.state == JobState.queued
            )
        ).all()
    return inserted, [(row[0], row[1], row[2]) for row in queued]


def advance(job_id: str, settings: Settings, factory: sessionmaker[Session], *, first: bool) -> str:
    """One step of a search: plan and send the next round, or assemble the outcome. `first`: the job's own
    delivery (a lease like any job); otherwise a continuation (claims the waiting parent)."""
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    parent_id = uuid.UUID(job_id)
    if first:
        lease = take_lease(factory, parent_id, owner, settings.lease_s, settings.max_attempts)
    else:
        lease = claim_round(factory, parent_id, owner, settings.lease_s)
    if lease is None:
        log.info("search %s is not claimable now (duplicate, finished, cancelled or held); skipping", job_id)
        return "skipped"
    heartbeat = Heartbeat(lease)
    heartbeat.start()
    try:
        return _advance(lease, settings, factory)
    finally:
        heartbeat.stop()


def _advance(lease: Lease, settings: Settings, factory: sessionmaker[Session]) -> str:
    from compression_core.errors import CompressionError
    from mcs_common.broker import send_job
    from worker.app import app

    parent_id = lease.job_id
    with factory() as session:
        parent = session.get(Job, parent_id)
        assert parent is not None
        session.expunge(parent)
        children = list(
            session.scalars(select(Job).where(Job.parent_id == parent_id).order_by(Job.trial_index))
        )
    try:
        driver, field = _driver(parent.spec), _field(parent.spec)
        if lease.should_stop():
            return _cancelled(lease, factory)
        if any(c.state not in FINISHED_STATES for c in children):
            release(lease)  # a round is still running; its last child sends the next continuation
            _advance_if_round_done(settings, factory, parent_id, parent.queue)
            return "waiting"
        storage.fetch_inputs(settings, parent_id, parent.inputs)
        root = job_dir(settings, parent_id)
        done = [as_child(c) for c in children]
        trace = list(((parent.metrics or {}).get(field) or {}).get("trace") or [])
        slots = free_slots(settings, parent.queue) if driver.adaptive else 1  # grid: all at once
        plan = driver.plan(done, slots, root / parent.inputs["model"])
        if not plan.finished:
            first_index = next_trial_index(children)
            trace.append(
                {
                    "round": len(trace) + 1,
                    "trials": list(range(first_index, first_index + len(plan.children))),
                    "note": plan.note,
                }
            )
            inserted, queued = insert_children(settings, factory, parent, first_index, plan.children)
            if not inserted and not queued and not _any_active(factory, parent_id):
                # nothing of this round will run, so no child's end would ever advance the outer job
                note = f"round {len(trace)} inserted nothing (its trial numbers are taken) and no trial runs"
                trace[-1] |= {"trials": [], "note": note}
                log.warning("%s %s: %s; ending it", field, parent_id, note)
                try:
                    return _finish(lease, settings, parent, driver, done, trace, note)
                except CompressionError as exc:
                    raise CompressionError(f"{field} ended: {note}; {exc}") from exc
            for child_id, queue, limit in queued:
                send_job(app, settings, str(child_id), queue, limit)
            if lease.should_stop():  # cancelled while this round was being inserted
                return _cancelled(lease, factory)
            fraction, message = driver.progress(done, plan.total)
            release(
                lease,
                progress_stage=field,
                progress_fraction=fraction,
                progress_message=f"{message}; round {len(trace)}: {plan.note}",
                metrics={field: {"trace": trace, "total": plan.total}},
            )
            log.info(
                "%s %s: round %d sent (%d trials): %s",
                field,
                parent_id,
                len(trace),
                len(plan.children),
                plan.note,
            )
            # a trial that ended before the release found the parent held and its continuation skipped it
            _advance_if_round_done(settings, factory, parent_id, parent.queue)
            return "waiting"
        return _finish(lease, settings, parent, driver, done, trace, plan.note)
    except CompressionError as exc:
        _fail(lease, factory, str(exc) or type(exc).__name__)
        return JobState.failed
    except Exception as exc:
        log.exception("outer job %s failed unexpectedly", parent_id)
        _fail(lease, factory, f"internal error in the worker ({type(exc).__name__}); see its logs")
        return JobState.failed


def _cancelled(lease: Lease, factory: sessionmaker[Session]) -> str:
    with factory() as session:
        cancel_children(session, lease.job_id)
    lease.finish(JobState.cancelled, progress_message="cancelled")
    return JobState.cancelled


def _fail(lease: Lease, factory: sessionmaker[Session], reason: str) -> None:
    with factory() as session:
        cancel_children(session, lease.job_id)
        spec = session.scalar(select(Job.spec).where(Job.id == lease.job_id)) or {}
    field = _field(spec) if is_outer(spec) else "outer"
    lease.finish(JobState.failed, error=reason if reason.startswith(field) else f"{field}: {reason}")


def _finish(
    lease: Lease,
    settings: Settings,
    parent: Job,
    driver: OuterDriver,
    trials: Sequence[Child],
    trace: list[dict[str, Any]],
    note: str,
) -> str:
    """The outcome the driver assembles (a search: the chosen trial's files, the `search` section,
    search.csv, the plots) and report.html, published as the parent's artifacts."""
    root = job_dir(settings, parent.id)
    work = root / f"work-{lease.owner.rsplit(':', 1)[-1]}"
    fetched = root / f"trials-{lease.owner.rsplit(':', 1)[-1]}"
    by_index = {t.index: t for t in trials}
    lease.progress("report", 0.99, "assembling the search's outcome")

    def best_dir(index: int) -> Path:
        folder = fetched / str(index)
        folder.mkdir(parents=True, exist_ok=True)
        job_id = by_index[index].job_id
        assert job_id is not None
        artifacts = _artifacts_of(lease, uuid.UUID(job_id))
        for name in ("model.bin", "model.pth", "metrics.json", *CHECKPOINTS):
            if name in ("model.pth", *CHECKPOINTS) and name not in artifacts:
                continue  # a Hugging Face model's trial ships checkpoint tars instead of model.pth
            _copy_artifact(settings, uuid.UUID(job_id), artifacts[name], folder / name)
        return folder

    try:
        metrics = driver.finish(trials, best_dir, work, trace=trace, note=note)
        write_report(str(parent.id), work, root / parent.inputs["model"])
        if lease.should_stop():
            raise _Stopped
        artifacts = [
            publish(settings, parent.id, work / name, name)
            for name in ARTIFACT_NAMES
            if name not in OPTIONAL_ARTIFACTS or (work / name).is_file()
        ]
        message = driver.summary(metrics, trials)
        lease.finish(
            JobState.succeeded,
            metrics=metrics,
            artifacts=artifacts,
            progress_stage="done",
            progress_fraction=1.0,
            progress_message=message,
        )
        return JobState.succeeded
    except _Stopped:
        lease.finish(JobState.cancelled, progress_message="cancelled")
        return JobState.cancelled
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(fetched, ignore_errors=True)
        storage.release_local_copies(settings, parent.id)


class _Stopped(Exception):
    pass


def _artifacts_of(lease: Lease, child_id: uuid.UUID) -> dict[str, dict[str, Any]]:
    with lease.factory() as session:
        records = session.scalar(select(Job.artifacts).where(Job.id == child_id)) or []
    return {record["name"]: record for record in records}


def _copy_artifact(settings: Settings, job_id: uuid.UUID, record: dict[str, Any], target: Path) -> None:
    location = storage.open_artifact(settings, job_id, record["name"], record["sha256"])
    if location is None:
        raise FileNotFoundError(f"trial {job_id} has no {record['name']}")
    if isinstance(location, Path):
        shutil.copyfile(location, target)
        return
    with target.open("wb") as out:  # MCS_STORAGE=s3: an object stream
        for chunk in location.chunks():
            out.write(chunk)


def _any_active(factory: sessionmaker[Session], parent_id: uuid.UUID) -> bool:
    with factory() as session:
        active = session.scalar(
            select(Job.id)
            .where(Job.parent_id == parent_id, Job.state.in_((JobState.queued, JobState.running)))
            .limit(1)
        )
    return active is not None


def _advance_if_round_done(
    settings: Settings, factory: sessionmaker[Session], parent_id: uuid.UUID, queue: str
) -> None:
    from mcs_common.broker import send_advance
    from worker.app import app

    if not _any_active(factory, parent_id):
        send_advance(app, settings, str(parent_id), queue)


def child_finished(settings: Settings, factory: sessionmaker[Session], parent_id: uuid.UUID) -> None:
    """After a child ends: when no sibling is queued or running, ask for the parent's next round."""
    from mcs_common.broker import send_advance
    from worker.app import app

    with factory() as session:
        parent = session.get(Job, parent_id)
        if parent is None or parent.state != JobState.running:
            return
        children = list(session.scalars(select(Job).where(Job.parent_id == parent_id)))
        queue, spec, metrics = parent.queue, parent.spec, parent.metrics or {}
    active = any(child.state not in FINISHED_STATES for child in children)
    try:  # progress while the parent waits: children done / total, best so far
        total = (metrics.get(_field(spec)) or {}).get("total")
        fraction, message = _driver(spec).progress(
            [as_child(c) for c in children], int(total or len(children))
        )
        with factory() as session:
            session.execute(
                update(Job)
                .where(Job.id == parent_id, Job.state == JobState.running, Job.lease_owner.is_(None))
                .values(progress_fraction=fraction, progress_message=message, updated_at=utcnow())
            )
            session.commit()
    except Exception:  # noqa: BLE001 - progress is a convenience; the continuation below is what matters
        log.warning("outer job %s: could not update its progress", parent_id, exc_info=True)
    if not active:
        send_advance(app, settings, str(parent_id), queue)
