"""Keeping the queue honest: requeue jobs the broker may have lost, and reap jobs whose worker vanished."""

from __future__ import annotations

import logging
import threading

from sqlalchemy.orm import Session, sessionmaker

from mcs_common.settings import Settings
from service import jobs
from service.dispatch import Dispatcher

log = logging.getLogger(__name__)


def requeue_on_startup(factory: sessionmaker[Session], dispatcher: Dispatcher) -> None:
    """The DB is the record of truth: every `queued` job is sent again (duplicates skip via the lease)."""
    try:
        with factory() as session:
            count = jobs.requeue_queued(session, dispatcher)
        if count:
            log.info("requeued %d queued job(s) at startup", count)
    except Exception:  # noqa: BLE001 - a broker down at startup must not stop the API; the reaper retries
        log.warning("could not requeue queued jobs at startup", exc_info=True)


class Reaper(threading.Thread):
    """Every `reaper_interval_s`, requeue (or fail) running jobs whose lease expired, and send again the
    jobs queued for longer than `requeue_after_s` (their broker message may be lost)."""

    def __init__(self, settings: Settings, factory: sessionmaker[Session], dispatcher: Dispatcher) -> None:
        super().__init__(name="mcs-reaper", daemon=True)
        self.settings, self.factory, self.dispatcher = settings, factory, dispatcher
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.settings.reaper_interval_s):
            try:
                with self.factory() as session:
                    jobs.reap_expired(session, self.settings, self.dispatcher)
                    jobs.requeue_stale(session, self.settings, self.dispatcher)
                    jobs.resume_searches(session, self.settings, self.dispatcher)
            except Exception:  # noqa: BLE001 - try again at the next interval
                log.warning("reaper pass failed", exc_info=True)

    def stop(self) -> None:
        self.stopped.set()
