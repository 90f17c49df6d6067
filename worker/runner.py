"""Runs one job: lease, heartbeat, `compress_file`, atomic publication of the artifacts, final state.

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
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.orm import Session, sessionmaker

from mcs_common import storage
from mcs_common.models import Job, JobState
from mcs_common.settings import Settings
from mcs_common.storage import ARTIFACT_NAMES, OPTIONAL_ARTIFACTS, job_dir, publish
from worker.store import Lease, take_lease

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


class Heartbeat(threading.Thread):
    """Renews the lease while the job runs, so a reaper can tell a live worker from a vanished one."""

    def __init__(self, lease: Lease) -> None:
        super().__init__(name=f"lease-{lease.job_id}", daemon=True)
        self.lease = lease
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.lease.seconds / 3):
            try:
                if not self.lease.renew():
                    return
            except Exception:  # noqa: BLE001 - a failed renewal is retried at the next beat
                log.warning("lease renewal failed for job %s", self.lease.job_id, exc_info=True)

    def stop(self) -> None:
        self.stopped.set()


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


REPORT_MAX_BYTES = 1 << 30


def write_report(job_id: str, work: Path, model_path: Path) -> None:
    """report.html beside the other outputs (plots embedded). A report is a convenience: if it cannot be
    drawn, the job still succeeds without it, and the reason goes to the log."""
    from compression_core.report import write_job_report

    # stream (issue 14): the report loads the original and model.pth whole; not for big or sharded models
    if (
        not (work / "model.pth").is_file()
        or not model_path.is_file()
        or model_path.stat().st_size > REPORT_MAX_BYTES
    ):
        log.info("job %s: no report.html (the model is sharded, has no model.pth, or is over 1 GiB)", job_id)
        return
    try:
        write_job_report(work, model_path)
    except SoftTimeLimitExceeded:
        raise
    except Exception:  # noqa: BLE001 - never fail a compressed model over its report
        log.warning("job %s: report.html could not be written; publishing without it", job_id, exc_info=True)
        (work / "report.html").unlink(missing_ok=True)


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


def run_job(job_id: str, settings: Settings, factory: sessionmaker[Session]) -> str:
    """Run a job to a final state and return that state (or 'skipped' for a duplicate delivery)."""
    from compression_core.errors import Cancelled, CompressionError
    from compression_core.job.pipeline import compress_file
    from compression_core.methods import upload_roles
    from compression_core.methods.search.spec import Holdout
    from compression_core.methods.search.trial import run_trial

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
    parent_id: uuid.UUID | None = None
    try:
        with factory() as session:
            job = session.get(Job, uuid.UUID(job_id))
            assert job is not None
            spec, inputs = _read_spec(job.spec), dict(job.inputs)
            time_limit = job.time_limit_s
            parent_id, trial = job.parent_id, job.trial  # a search's trial (worker/search.py)
        storage.fetch_inputs(settings, job_id, inputs)  # MCS_STORAGE=s3: from the bucket
        last_stage: list[str | None] = [None]

        def report(progress: Any) -> None:
            last_stage[0] = progress.stage
            lease.progress(progress.stage, progress.fraction, progress.message)

        on_progress = throttled(
            settings.progress_interval_s, report, always=lambda p: p.stage != last_stage[0] or p.fraction >= 1
        )
        should_cancel = throttled(settings.cancel_poll_s, lease.should_stop, always=lambda: False)
        work.mkdir(parents=True, exist_ok=True)
        data_path = root / inputs["data"] if "data" in inputs else None
        compress = compress_file
        if parent_id is not None:  # a trial: retrain without, and also measure on, the validation split
            compress = functools.partial(
                run_trial, holdout=Holdout.model_validate((trial or {}).get("validation") or {})
            )
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
            checkpoint_dir=root / "checkpoint",  # the job's folder: a later attempt resumes LC / SWS from it
        )
        metrics = json.loads((work / "metrics.json").read_text())  # finite numbers only, unlike the dict
        if parent_id is None:  # a trial's report is its search's (the table and the plot)
            lease.progress("report", 1.0, "writing report.html")
            write_report(job_id, work, root / inputs["model"])
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
    except CompressionError as exc:
        lease.finish(JobState.failed, error=str(exc) or type(exc).__name__)
        return JobState.failed
    except Exception as exc:
        log.exception("job %s failed unexpectedly", job_id)
        lease.finish(
            JobState.failed, error=f"internal error in the worker ({type(exc).__name__}); see its logs"
        )
        return JobState.failed
    finally:
        heartbeat.stop()
        shutil.rmtree(work, ignore_errors=True)
        storage.release_local_copies(settings, job_id)  # MCS_STORAGE=s3: the bucket has everything
        if parent_id is not None:  # the last trial of a round asks for the search's next one
            from worker.search import child_finished

            child_finished(settings, factory, parent_id)
