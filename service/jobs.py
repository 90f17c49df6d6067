"""The service layer: every operation on jobs that the routes and the CLI need. Routes call these and
translate nothing but HTTP; SQL lives here and in `worker/store.py`, torch only behind `compression_core`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import false, func, select, text, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased, defer

from mcs_common.models import FINISHED_STATES, Job, JobState, cancel_children, utcnow
from mcs_common.settings import Settings
from mcs_common.storage import ARTIFACT_NAMES, job_dir, open_artifact, remove_job_files, store_inputs
from service.admission import check_admission
from service.auth import Principal
from service.dispatch import Dispatcher
from service.errors import (
    ArtifactNotFound,
    IdempotencyKeyReused,
    InvalidSpec,
    InvalidSubmission,
    JobConflict,
    JobNotFound,
    LimitExceeded,
    Unavailable,
)
from service.observability import main_method
from service.schemas import (
    FieldError,
)
from service.upload_checks import (
    check_data_for_model,
    check_state_dict,
    check_state_dicts,
    model_spec_of,
    spec_text,
)
from service.uploads import StagedUpload, byte_limit, unpack_tar

log = logging.getLogger(__name__)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ValueError(f"duplicate keys {repeated}")
    return dict(pairs)


def strict_json(text: str) -> None:
    """Refuse what JSON parsers disagree on: NaN/Infinity (`alpha: Infinity` zeroed the weights) and
    repeated keys (one parser keeps the first, another the last), and nesting deeper than any spec needs
    (past ~1,000 levels Python's parser raises RecursionError)."""
    from compression_core.jsonbound import MAX_SPEC_DEPTH, JSONDepthError, loads_bounded

    try:
        loads_bounded(
            text,
            MAX_SPEC_DEPTH,
            "the spec",
            parse_constant=_refuse_constant,
            object_pairs_hook=_refuse_duplicates,
        )
    except json.JSONDecodeError:
        return  # not JSON at all: the validation below names it like any other spec error
    except JSONDepthError as exc:
        raise InvalidSpec(str(exc), [FieldError(field="spec", message=str(exc))]) from exc
    except ValueError as exc:
        raise InvalidSpec(
            f"the spec is not strict JSON: {exc}", [FieldError(field="spec", message=str(exc))]
        ) from exc


def parse_spec(text: str) -> dict[str, Any]:
    """Validate a spec with the library's own model; errors name the field as `spec.<path>`."""
    from compression_core.spec import Spec

    strict_json(text)
    try:
        spec = Spec.model_validate_json(text, strict=True)  # "k": "4" is a string, not a number
    except ValidationError as exc:
        errors = [
            FieldError(
                # a search parameter that cannot be applied names its path (methods/search/paths.py)
                field=".".join(
                    [
                        "spec",
                        *(
                            str(part)
                            for part in getattr(error.get("ctx", {}).get("error"), "loc", error["loc"])
                        ),
                    ]
                ),
                message=error["msg"],
                type=error["type"],
            )
            for error in exc.errors()
        ]
        names = ", ".join(error.field for error in errors)
        raise InvalidSpec(f"the spec is not valid: {names}", errors) from exc
    check_spec_size(spec)
    return spec.model_dump(mode="json")


MAX_RULES = 1_000  # each rule is matched against every tensor: rules x tensors name matches per job
MAX_PATTERNS = 10_000  # name patterns over all rules


def check_spec_size(spec: Any) -> None:
    """Bound the work a spec's selectors cost (a 1 MiB spec could hold ~100,000 patterns)."""
    rules = list(getattr(spec, "rules", None) or [])
    patterns = sum(len(rule.select.patterns) for rule in rules)
    if len(rules) > MAX_RULES or patterns > MAX_PATTERNS:
        field = "spec.rules" if len(rules) > MAX_RULES else "spec.rules.select.name"
        raise InvalidSpec(
            f"the spec has {len(rules)} rules and {patterns} name patterns; at most {MAX_RULES} rules "
            f"and {MAX_PATTERNS} patterns",
            [FieldError(field=field, message="too many")],
        )


ACTIVE_STATES = (JobState.queued, JobState.running)


def lock_owner(session: Session, owner: str) -> None:
    """Start a transaction that holds, until commit, a lock no other submission of `owner` can pass:
    a transaction-scoped advisory lock on PostgreSQL; on SQLite the database's write lock, taken by a
    first statement that writes (nothing) and waits out `busy_timeout` like any writer."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:owner))"), {"owner": f"mcs-jobs:{owner}"}
        )
    elif dialect == "sqlite":
        session.execute(update(Job).where(false()).values(state=Job.state))


def check_concurrency(session: Session, principal: Principal) -> None:
    """429 when the caller already has `max_concurrent_jobs` jobs queued or running."""
    limit = principal.max_concurrent_jobs
    if limit is None:
        return
    active = session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.owner == principal.owner, Job.state.in_(ACTIVE_STATES), Job.parent_id.is_(None))
    )  # a search counts once, not once per trial
    if int(active or 0) >= limit:
        raise LimitExceeded(
            f"limit max_concurrent_jobs={limit} reached for token {principal.name!r}: {active} job(s) are "
            "queued or running; wait for one to finish or cancel one",
            [FieldError(field="max_concurrent_jobs", message=str(limit))],
        )


def request_hash(spec: dict[str, Any], queue: str, digests: dict[str, str]) -> str:
    """What makes two submissions the same: the normalized spec, the queue and each file's SHA-256."""
    canonical = json.dumps({"spec": spec, "queue": queue, "files": digests}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


IDEMPOTENCY_KEY_PATTERN = r"^[!-~]([ -~]{0,253}[!-~])?$"  # printable ASCII; HTTP trims edge spaces


def check_idempotency_key(key: str | None) -> str | None:
    import re

    if key is None:
        return None
    if re.fullmatch(IDEMPOTENCY_KEY_PATTERN, key) is None:
        raise InvalidSubmission(
            "Idempotency-Key must be 1 to 255 printable ASCII characters",
            [FieldError(field="Idempotency-Key", message="invalid")],
        )
    return key


def _replay(session: Session, principal: Principal, key: str, digest: str) -> Job | None:
    """The job first submitted with this key by this client, or None; 422 if its payload differs."""
    job = session.scalars(select(Job).where(Job.owner == principal.owner, Job.idempotency_key == key)).first()
    if job is not None and job.request_hash != digest:
        raise IdempotencyKeyReused(
            f"Idempotency-Key {key!r} was used for a different submission (job {job.id}); "
            "use a new key for a new job",
            [FieldError(field="Idempotency-Key", message="reused with a different payload")],
        )
    return job


def create_job(
    session: Session,
    settings: Settings,
    dispatcher: Dispatcher,
    staged: StagedUpload,
    principal: Principal,
    idempotency_key: str | None = None,
) -> tuple[Job, bool]:
    """Validate an upload, make it a queued job and hand its id to the broker. Consumes `staged`.

    Returns the job and whether it is a replay: with an `idempotency_key` the client used before (with
    the same spec and files), the first job is returned and nothing new is queued."""
    try:
        queue = staged.fields.get("queue", "cpu")
        if queue not in ("cpu", "gpu"):
            raise InvalidSubmission(
                "queue must be 'cpu' or 'gpu'", [FieldError(field="queue", message=queue)]
            )
        if "model" not in staged.files:
            raise InvalidSubmission(
                "the `model` file is required", [FieldError(field="model", message="required")]
            )
        text, tar = spec_text(staged), staged.files["model"].suffix == ".tar"
        if not tar:  # the cheap checks first (file metadata), before the spec's (a search's can cost)
            check_state_dicts(staged)
        spec = parse_spec(text)
        model_spec = model_spec_of(spec)
        if not tar and model_spec is not None and model_spec.hf:  # {"hf": true}: the upload must be one
            check_state_dict(staged.files["model"], "model", model_spec)
        stored = {role: d for role, d in staged.digests.items() if role != "spec_file"}
        digest = request_hash(spec, queue, stored)
        if idempotency_key is not None:
            first = _replay(session, principal, idempotency_key, digest)
            if first is not None:
                staged.discard()
                return first, True
        check_concurrency(session, principal)
        if tar:
            unpack_tar(staged, *byte_limit(settings, principal))  # only once the limits passed
            check_state_dicts(staged, model_spec_of(spec))
        check_admission(staged, spec)  # architecture, state dict and data against the model, from headers
        check_data_for_model(staged, model_spec)  # data a model source reads itself (token ids)
    except BaseException:
        staged.discard()
        raise
    job = Job(
        id=uuid.uuid4(),
        state=JobState.queued,
        queue=queue,
        spec=spec,
        owner=principal.owner,
        idempotency_key=idempotency_key,
        request_hash=digest,
        time_limit_s=principal.max_job_seconds,
        method=main_method(spec),
    )
    inputs = job_dir(settings, job.id) / "inputs"
    inputs.parent.mkdir(parents=True, exist_ok=True)
    staged.files.pop("spec_file", None)
    os.replace(staged.directory, inputs)
    job.inputs = {role: f"inputs/{path.name}" for role, path in staged.files.items()}
    try:
        store_inputs(settings, job.id)  # MCS_STORAGE=s3: into the bucket, where any worker finds them
    except Exception as exc:
        log.error("could not store the inputs of job %s: %r", job.id, exc)
        remove_job_files(settings, job.id)
        raise Unavailable("the artifact store is unreachable; nothing was queued, try again") from exc
    try:  # count and insert under one per-owner lock, so simultaneous submissions cannot all pass
        session.rollback()
        lock_owner(session, principal.owner)
        check_concurrency(session, principal)
    except BaseException:
        session.rollback()
        remove_job_files(settings, job.id)
        raise
    session.add(job)
    try:
        session.commit()
    except IntegrityError:  # the same key, submitted concurrently, won the race
        session.rollback()
        remove_job_files(settings, job.id)
        first = _replay(session, principal, idempotency_key or "", digest)
        if first is None:
            raise
        return first, True
    try:
        dispatcher.send(job.id, queue, job.time_limit_s)
    except Exception as exc:
        log.error("broker refused job %s: %r", job.id, exc)
        session.delete(job)
        session.commit()
        remove_job_files(settings, job.id)
        raise Unavailable("the job queue is unreachable; nothing was queued, try again") from exc
    return job, False


def _visible(principal: Principal) -> Any:
    return true() if principal.admin else Job.owner == principal.owner


def get_job(session: Session, job_id: uuid.UUID, principal: Principal) -> Job:
    """The job, if the caller may see it: another client's job is answered like a missing one (404)."""
    job = session.get(Job, job_id)
    if job is None or not (principal.admin or job.owner == principal.owner):
        raise JobNotFound(f"no job with id {job_id}")
    return job


def list_jobs(
    session: Session,
    principal: Principal,
    *,
    state: JobState | None,
    limit: int,
    offset: int,
    summaries: bool = False,
) -> tuple[list[Job], int]:
    """A page of the caller's jobs (an admin's: everyone's), newest first, and how many match in all.
    With `summaries`, the spec and metrics columns are not read (they can be megabytes per job).
    Top-level jobs only: a search's trials are listed in the search (`children`)."""
    query = select(Job).where(_visible(principal), Job.parent_id.is_(None))
    if summaries:
        query = query.options(defer(Job.spec, raiseload=True), defer(Job.metrics, raiseload=True))
    count = select(func.count()).select_from(Job).where(_visible(principal), Job.parent_id.is_(None))
    if state is not None:
        query, count = query.where(Job.state == state), count.where(Job.state == state)
    rows = session.scalars(query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit).offset(offset))
    return list(rows), int(session.scalar(count) or 0)


def cancel_job(session: Session, dispatcher: Dispatcher, job_id: uuid.UUID, principal: Principal) -> Job:
    """A queued job is cancelled at once (it will never run); a running one is asked to stop."""
    job = get_job(session, job_id, principal)
    now = utcnow()
    done = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.queued)
        .values(state=JobState.cancelled, cancel_requested=True, finished_at=now, updated_at=now)
    )
    if done.rowcount:  # type: ignore[attr-defined]
        # no revoke broadcast: a worker takes a job only through its lease, which needs `queued`; a
        # broadcast would leave one control message per dead worker's mailbox (embedded broker) forever
        session.commit()
    else:
        session.execute(
            update(Job).where(Job.id == job_id, Job.state == JobState.running).values(cancel_requested=True)
        )
        session.commit()
    if _is_outer(job.spec):  # a search takes its trials with it; between rounds nobody holds it
        cancel_children(session, job_id)
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.state == JobState.running, Job.lease_owner.is_(None))
            .values(state=JobState.cancelled, finished_at=now, updated_at=now, progress_message="cancelled")
        )
        session.commit()
    session.refresh(job)
    if job.parent_id is not None and job.state == JobState.cancelled:  # the search goes on without it
        dispatcher.send_advance(job.parent_id, job.queue)
    if job.state in (JobState.succeeded, JobState.failed):
        raise JobConflict(f"job {job_id} already {job.state}; nothing to cancel")
    return job


def _is_outer(spec: dict[str, Any]) -> bool:
    """Whether the job is an outer method's (a search): it runs as child jobs (the registry says which)."""
    from compression_core.methods.outer import outer_method

    return outer_method(spec) is not None


def children_of(session: Session, job: Job) -> list[Job] | None:
    """An outer job's children (a search's trials) in order (None for any other job)."""
    if not _is_outer(job.spec):
        return None
    return list(session.scalars(select(Job).where(Job.parent_id == job.id).order_by(Job.trial_index)))


def resume_searches(
    session: Session,
    settings: Settings,
    dispatcher: Dispatcher,
    waiting: set[str] | None = None,
    older_than_s: float | None = None,
) -> int:
    """Searches waiting between rounds whose trials all ended but which nobody advanced (the message was
    lost, or a trial's worker died after finishing it): send the continuation again. Harmless if doubled.
    With `waiting` (the ids of the searches whose continuation is in the embedded broker's folder), those
    are skipped and the rest are advanced after `older_than_s` instead of `requeue_after_s`."""
    now = utcnow()
    age = settings.requeue_after_s if older_than_s is None else older_than_s
    cutoff = now - timedelta(seconds=age)
    child = aliased(Job)
    trial_active = select(child.id).where(child.parent_id == Job.id, child.state.in_(ACTIVE_STATES)).exists()
    rows = session.execute(
        select(Job.id, Job.queue).where(
            Job.state == JobState.running,
            Job.lease_owner.is_(None),
            Job.updated_at < cutoff,
            Job.parent_id.is_(None),
            ~trial_active,
        )
    ).all()
    count = 0
    for job_id, queue in rows:
        if waiting is not None and str(job_id) in waiting:
            continue
        touched = session.execute(
            update(Job).where(Job.id == job_id, Job.updated_at < cutoff).values(updated_at=now)
        )
        session.commit()
        if touched.rowcount:  # type: ignore[attr-defined]
            log.warning("search %s waited %.0f s with no trial running; advancing it", job_id, age)
            dispatcher.send_advance(job_id, queue)
            count += 1
    return count


def delete_job(session: Session, settings: Settings, job_id: uuid.UUID, principal: Principal) -> None:
    job = get_job(session, job_id, principal)
    if job.parent_id is not None:  # its search's rounds and outcome are numbered over its trials
        raise JobConflict(
            f"job {job_id} is trial #{job.trial_index} of search {job.parent_id}; a trial is deleted with "
            "its search (DELETE the search once it has finished)"
        )
    if job.state not in FINISHED_STATES:
        raise JobConflict(f"job {job_id} is {job.state}; cancel it first, then delete it")
    children = list(session.scalars(select(Job).where(Job.parent_id == job_id)))
    if any(child.state not in FINISHED_STATES for child in children):
        raise JobConflict(f"job {job_id} still has trials stopping; try again in a moment")
    for child in children:  # a search's trials go with it
        session.delete(child)
    session.flush()
    session.delete(job)
    session.commit()
    for child in children:
        remove_job_files(settings, child.id)
    remove_job_files(settings, job_id)


def find_artifact(settings: Settings, job: Job, name: str) -> tuple[Any, dict[str, Any]]:
    """An artifact named in the allow-list and its record, or ArtifactNotFound. The first is a Path
    (local storage) or an opened `mcs_common.s3.ObjectStream` (MCS_STORAGE=s3)."""
    if name not in ARTIFACT_NAMES:
        raise ArtifactNotFound(f"unknown artifact {name!r}; artifacts are {', '.join(ARTIFACT_NAMES)}")
    for record in job.artifacts or []:
        if record["name"] == name:
            location = open_artifact(settings, job.id, name, record["sha256"])
            if location is not None:
                return location, record
    raise ArtifactNotFound(f"job {job.id} has no {name} (state: {job.state})")


def requeue_queued(session: Session, dispatcher: Dispatcher) -> int:
    """Send every queued job again: a message may have been lost (e.g. the embedded broker died with the
    process). Duplicates are harmless: a worker takes a job only through its lease."""
    rows = session.execute(
        select(Job.id, Job.queue, Job.time_limit_s)
        .where(Job.state == JobState.queued)
        .order_by(Job.created_at)
    ).all()
    for job_id, queue, time_limit in rows:
        dispatcher.send(job_id, queue, time_limit)
    return len(rows)


def requeue_stale(session: Session, settings: Settings, dispatcher: Dispatcher) -> int:
    """Send again the jobs queued for longer than `requeue_after_s`: their message may be lost (e.g. a
    broker restarted without persistence). A duplicate message is harmless (the lease)."""
    now = utcnow()
    cutoff = now - timedelta(seconds=settings.requeue_after_s)
    rows = session.execute(
        select(Job.id, Job.queue, Job.time_limit_s).where(
            Job.state == JobState.queued, Job.updated_at < cutoff
        )
    ).all()
    for job_id, queue, time_limit in rows:
        touched = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.state == JobState.queued, Job.updated_at < cutoff)
            .values(updated_at=now)
        )
        session.commit()
        if touched.rowcount:  # type: ignore[attr-defined]
            log.warning(
                "job %s queued for over %.0f s; sent to the broker again", job_id, settings.requeue_after_s
            )
            dispatcher.send(job_id, queue, time_limit)
    return len(rows)


def requeue_missing(
    session: Session, dispatcher: Dispatcher, waiting: set[str], older_than_s: float
) -> list[uuid.UUID]:
    """Send again the queued jobs, untouched for `older_than_s`, whose id is not among the broker's
    `waiting` messages: their message is provably gone (embedded broker: a listing of its folder). The age
    covers a send in flight and a message a worker took but has not leased yet (a duplicate is harmless)."""
    now = utcnow()
    cutoff = now - timedelta(seconds=older_than_s)
    rows = session.execute(
        select(Job.id, Job.queue, Job.time_limit_s).where(
            Job.state == JobState.queued, Job.updated_at < cutoff
        )
    ).all()
    sent = []
    for job_id, queue, time_limit in rows:
        if str(job_id) in waiting:
            continue
        touched = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.state == JobState.queued, Job.updated_at < cutoff)
            .values(updated_at=now)
        )
        session.commit()
        if touched.rowcount:  # type: ignore[attr-defined]
            log.warning("job %s is queued but its broker message is gone; sent again", job_id)
            dispatcher.send(job_id, queue, time_limit)
            sent.append(job_id)
    return sent


def reap_expired(session: Session, settings: Settings, dispatcher: Dispatcher) -> int:
    """Running jobs whose worker stopped renewing its lease: requeue them, or fail them after max_attempts."""
    now = utcnow()
    stale = list(
        session.scalars(select(Job).where(Job.state == JobState.running, Job.lease_expires_at < now))
    )
    count = 0
    for job in stale:
        guard = (Job.id == job.id, Job.state == JobState.running, Job.lease_expires_at < now)
        if job.cancel_requested:
            values: dict[str, Any] = {"state": JobState.cancelled, "finished_at": now}
        elif job.attempts >= settings.max_attempts:
            values = {
                "state": JobState.failed,
                "finished_at": now,
                "error": f"the worker running this job stopped responding {job.attempts} times; giving up",
            }
        else:
            values = {"state": JobState.queued}
        result = session.execute(update(Job).where(*guard).values(lease_owner=None, updated_at=now, **values))
        session.commit()
        if result.rowcount and values["state"] == JobState.queued:  # type: ignore[attr-defined]
            log.warning("job %s lost its worker; requeued (attempt %d)", job.id, job.attempts + 1)
            dispatcher.send(job.id, job.queue, job.time_limit_s)
        # a search's trial ended (cancelled or failed): its round may be done
        elif result.rowcount and job.parent_id is not None:  # type: ignore[attr-defined]
            dispatcher.send_advance(job.parent_id, job.queue)
        count += result.rowcount  # type: ignore[attr-defined]
    return count
