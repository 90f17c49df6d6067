"""A worker started as `mcs serve`'s child stops when its parent is gone, however the parent died.

`mcs serve` passes its pid in MCS_PARENT_PID. A kill -9 of the parent runs no cleanup, so the child would
live on (PPID 1) and keep taking jobs next to the worker of a restarted `mcs serve`. A thread here checks
every second that the parent is still this process's parent; when not, it asks Celery for a cold shutdown
(SIGQUIT: the pool's children are terminated too). The job it was running is requeued by its lease.
(`prctl(PR_SET_PDEATHSIG)` would fire when the *thread* that spawned the child ends, and the supervisor
thread that restarts the child ends before the child's warm shutdown does.)
"""

from __future__ import annotations

import logging
import os
import signal
import threading

log = logging.getLogger(__name__)
PARENT_ENV = "MCS_PARENT_PID"


def _watch(parent: int, interval: float) -> None:
    while os.getppid() == parent:
        threading.Event().wait(interval)
    log.error("the parent process %d is gone; this worker stops (its running job is requeued)", parent)
    os.kill(os.getpid(), signal.SIGQUIT)


def watch_parent(interval: float = 1.0) -> threading.Thread | None:
    """Start the watch when MCS_PARENT_PID names this process's parent; return the thread, or None."""
    value = os.environ.get(PARENT_ENV, "")
    if not value.isdigit():
        return None
    parent = int(value)
    if os.getppid() != parent:  # already orphaned, or not started by that parent
        os.kill(os.getpid(), signal.SIGQUIT)
        return None
    thread = threading.Thread(target=_watch, args=(parent, interval), name="mcs-parent-watch", daemon=True)
    thread.start()
    return thread
