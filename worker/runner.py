"""Runs one job: lease, heartbeat, `compress_file` (or, for an outer job's child, its driver's
`run_child`), atomic publication of the artifacts, final state.

The compression itself is `compression_core.job.pipeline.compress_file`; this module only wires it to the
job row (progress, cancel) and the data dir.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mcs_common import storage
from mcs_common.models import Job, JobState
from mcs_common.settings import Settings
from mcs_common.storage import ARTIFACT_NAMES, OPTIONAL_ARTIFACTS, job_dir, publish
from worker.report import write_report
from worker.store import Heartbeat, take_lease

log = logging.getLogger(__name__)


def pick_device() -> str:
    """`cuda:<n>` when a GPU is visible, else `cpu`. Called only inside the task (the worker's child
    process), so the parent never initialises CUDA; prefork child k uses GPU k (one process per GPU)."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    from billiard.process import current_process

    index = getattr(current_process(), "index", 0) or 0
    return f"cuda:{index % torch.cuda.device_count()}"


def throttled(
    interval: float, func: Callable[..., Any], *, always: Callable[..., bool]
) -> Callable[..., Any]:
    """Call `func` at most once per `interval` seconds, except when `always(*args)` says the call matters."""
    last = [float("-inf")]

    def call(*args: Any) -> Any:
        now = time.monotonic()
        if now - last[0] >= interval or always(*args):
            last[0] = now
            return func(*args)
        return None

    return call


def _read_spec(stored: dict[str, Any]) -> Any:
    """A job's spec as submitted (its whole-spec checks ran then); a search's trial whose sampled value
    its search's check did not validate fails with the reason (SpecError), not as an internal error."""
    from pydantic import ValidationError

    from compression_core.errors import SpecError
    from compression_core.spec import CHECKED_CONTEXT, Spec, format_validation_error

    try:
        return Spec.model_validate(stored, context=CHECKED_CONTEXT)
    except ValidationError as exc:
        raise SpecError(f"the spec is not valid: {format_validation_error(exc)}") from None


def _out_of_memory(error: BaseException, stage: str | None, settings: Settings) -> str:
    """The failure reason of a job whose allocation was refused: where, how much was allowed, what asked."""
    where = f" in its {stage!r} stage" if stage else ""
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    if "CUDA" in first:
        allowed = "more GPU memory than its device has"
    elif settings.job_memory_bytes is not None:
        allowed = f"more memory than MCS_JOB_MEMORY_BYTES={settings.job_memory_bytes:,} bytes allows"
    else:
        allowed = "more memory than its worker could allocate"
    return f"the job needed {allowed}{where} ({type(error).__name__}: {first})"


def run_job(job_id: str, settings: Settings, factory: sessionmaker[Session]) -> str:
    """Run a job to a final state and return that state (or 'skipped' for a duplicate delivery)."""
    from compression_core.errors import Cancelled, CompressionError
    from compression_core.job.pipeline import compress_file
    from compression_core.memory_cap import memory_cap, refused_allocation
    from compression_core.methods import upload_roles
    from compression_core.methods.outer import driver_for

    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    lease = take_lease(factory, uuid.UUID(job_id), owner, settings.lease_s, settings.max_attempts)
    if lease is None:
        log.info("job %s is not claimable (duplicate delivery, cancelled or finished); skipping", job_id)
        return "skipped"
    heartbeat = Heartbeat(lease)
    heartbeat.start()
    root = job_dir(settings, job_id)
    work = root / f"work-{owner.rsplit(':', 1)[-1]}"
    time_limit: int | None = None
    last_stage: list[str | None] = [None]
    parent_id: uuid.UUID | None = None
    try:
        with factory() as session:
            job = session.get(Job, uuid.UUID(job_id))
            assert job is not None
            spec, inputs = _read_spec(job.spec), dict(job.inputs)
            time_limit = job.time_limit_s
            parent_id, trial = job.parent_id, job.trial  # an outer job's child (worker/search.py)
            parent_spec = session.scalar(select(Job.spec).where(Job.id == parent_id)) if parent_id else None
        storage.fetch_inputs(settings, job_id, inputs)  # MCS_STORAGE=s3: from the bucket

        def report(progress: Any) -> None:
            last_stage[0] = progress.stage
            lease.progress(progress.stage, progress.fraction, progress.message)

        on_progress = throttled(
            settings.progress_interval_s, report, always=lambda p: p.stage != last_stage[0] or p.fraction >= 1
        )
        should_cancel = throttled(settings.cancel_poll_s, lease.should_stop, always=lambda: False)
        work.mkdir(parents=True, exist_ok=True)
        data_path = root / inputs["data"] if "data" in inputs else None
        compress: Callable[..., Any] = compress_file
        driver = driver_for(parent_spec) if parent_spec is not None else None
        if driver is not None:  # a child runs as its outer method says (a search's trial: with a holdout)
            compress = functools.partial(driver.run_child, record=trial or {})
        with memory_cap(settings.job_memory_bytes):  # past it: an allocation error, not the OOM killer
            compress(
                root / inputs["model"],
                spec,
                work,
                progress=on_progress,
                should_cancel=lambda: bool(should_cancel()),
                device=pick_device(),
                data_path=data_path,
                inputs={
                    r: root / inputs[r] for r in upload_roles() if r not in ("model", "data") and r in inputs
                },
                # the job's folder: a later attempt resumes LC / SWS from it
                checkpoint_dir=root / "checkpoint",
            )
            if parent_id is None:  # a child's report is its outer job's (a search's table and plot)
                lease.progress("report", 1.0, "writing report.html")
                write_report(job_id, work, root / inputs["model"])
        metrics = json.loads((work / "metrics.json").read_text())  # finite numbers only, unlike the dict
        if lease.should_stop():  # lost the lease (or cancelled) while finishing: publish nothing
            raise Cancelled("stopped before publishing")
        artifacts = [
            publish(settings, job_id, work / name, name)
            for name in ARTIFACT_NAMES
            if name not in OPTIONAL_ARTIFACTS or (work / name).is_file()
        ]
        lease.finish(
            JobState.succeeded,
            metrics=metrics,
            artifacts=artifacts,
            progress_stage="done",
            progress_fraction=1.0,
            progress_message="",
        )
        return JobState.succeeded
    except Cancelled:
        lease.finish(JobState.cancelled, progress_message="cancelled")
        return JobState.cancelled
    except SoftTimeLimitExceeded:
        if time_limit is not None and time_limit < settings.soft_time_limit_s:
            limit = f"max_job_seconds={time_limit} s of its token"
        else:
            limit = f"MCS_SOFT_TIME_LIMIT_S={settings.soft_time_limit_s} s"
        lease.finish(JobState.failed, error=f"the job ran past the time limit {limit}")
        return JobState.failed
    except Exception as exc:
        if refused_allocation(exc):
            lease.finish(JobState.failed, error=_out_of_memory(exc, last_stage[0], settings))
            return JobState.failed
        if isinstance(exc, CompressionError):
            lease.finish(JobState.failed, error=str(exc) or type(exc).__name__)
            return JobState.failed
        log.exception("job %s failed unexpectedly", job_id)
        lease.finish(
            JobState.failed, error=f"internal error in the worker ({type(exc).__name__}); see its logs"
        )
        return JobState.failed
    finally:
        heartbeat.stop()
        shutil.rmtree(work, ignore_errors=True)
        storage.release_local_copies(settings, job_id)  # MCS_STORAGE=s3: the bucket has everything
        if parent_id is not None:  # the last child of a round asks for the outer job's next one
            from worker.search import child_finished

            child_finished(settings, factory, parent_id)
