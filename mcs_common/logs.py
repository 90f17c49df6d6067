"""Logging for `mcs serve` and `mcs worker`: one JSON object per line (or plain text on a terminal), each
carrying the job id and request id of the work it belongs to.

The ids travel in context variables: the worker sets `job_id` for the duration of a task, the API sets
`request_id` (and `job_id` when the path names a job) for the duration of a request. A filter on the
handler copies them onto every record, so library code logs with plain `logging.getLogger(__name__)`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

job_id_var: ContextVar[str | None] = ContextVar("mcs_job_id", default=None)
request_id_var: ContextVar[str | None] = ContextVar("mcs_request_id", default=None)

LogFormat = Literal["json", "text"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [job=%(job_id)s req=%(request_id)s] %(message)s"
_HANDLER_NAME = "mcs"
# attributes every LogRecord has; anything else on a record came from `extra=` and is worth keeping
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class ContextFilter(logging.Filter):
    """Adds `job_id` and `request_id` from the context to each record (None outside a job/request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_id", None) is None:
            record.job_id = job_id_var.get() or _celery_task_id(record)
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        return True


def _celery_task_id(record: logging.LogRecord) -> str | None:
    """Celery's consumer logs 'Task name[id] received' outside any task: its args name the task id,
    which is the job id (service.dispatch sends each job with task_id=job_id)."""
    if record.name.startswith("celery.") and isinstance(record.args, Mapping):
        task_id = record.args.get("id")
        return str(task_id) if task_id else None
    return None


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, job_id, request_id,
    process, any `extra=` fields, and the traceback as one string."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "job_id": getattr(record, "job_id", None),
            "request_id": getattr(record, "request_id", None),
            "process": record.process,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def default_format(stream: TextIO) -> LogFormat:
    """JSON for machines (a pipe, a file, a container's log), text for a person at a terminal."""
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):
        return "json"


def configure_logging(
    level: int | str = logging.INFO, fmt: str | None = None, stream: TextIO | None = None
) -> LogFormat:
    """Route every logger (Celery's, uvicorn's, the library's) through one handler on the root logger.

    `fmt` is "json" or "text"; None reads MCS_LOG_FORMAT, and without it picks by whether the stream is
    a terminal. Idempotent: calling it again (e.g. in a Celery child process) replaces the handler."""
    stream = stream or sys.stderr
    chosen = (fmt or os.environ.get("MCS_LOG_FORMAT") or default_format(stream)).lower()
    if chosen not in ("json", "text"):
        raise ValueError(f"MCS_LOG_FORMAT must be json or text, not {chosen!r}")
    handler = logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if chosen == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == _HANDLER_NAME or not isinstance(old, logging.NullHandler):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    logging.captureWarnings(True)  # warnings (e.g. Celery's) become records, not raw stderr lines
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "celery.task"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    return chosen  # type: ignore[return-value]


@contextlib.contextmanager
def job_context(job_id: str | None) -> Iterator[None]:
    """Every record logged inside carries this job id."""
    token = job_id_var.set(job_id)
    try:
        yield
    finally:
        job_id_var.reset(token)
