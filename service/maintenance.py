"""Keeping the queue honest: requeue jobs the broker may have lost, and reap jobs whose worker vanished."""

from __future__ import annotations

import logging
import threading
import uuid

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


LOST_MESSAGE_CHECK_S = 2.0  # embedded broker: how often the message folder is compared with the queued jobs
LOST_MESSAGE_AGE_S = 5.0  # a queued job untouched this long with no message file is sent again


class LostMessageWatch(threading.Thread):
    """Embedded mode only: every LOST_MESSAGE_CHECK_S, list the broker's message folder and send again
    each queued job (older than LOST_MESSAGE_AGE_S) that has no message there, and advance each search
    waiting with no trial running and no continuation there, so a lost message costs seconds, not
    `requeue_after_s`."""

    def __init__(self, settings: Settings, factory: sessionmaker[Session], dispatcher: Dispatcher) -> None:
        super().__init__(name="mcs-lost-messages", daemon=True)
        self.settings, self.factory, self.dispatcher = settings, factory, dispatcher
        self.stopped = threading.Event()

    def check(self) -> list[uuid.UUID]:
        from mcs_common.fs_broker import queued_task_ids, search_of

        # listed before the query: a message sent after the listing belongs to a job too young to count
        waiting = queued_task_ids(self.settings.broker_dir / "messages")
        searches = {search for task_id in waiting if (search := search_of(task_id))}
        with self.factory() as session:
            sent = jobs.requeue_missing(session, self.dispatcher, waiting, LOST_MESSAGE_AGE_S)
            # a waiting search whose continuation is gone: as soon as a lost job (it waited requeue_after_s)
            jobs.resume_searches(session, self.settings, self.dispatcher, searches, LOST_MESSAGE_AGE_S)
        return sent

    def run(self) -> None:
        while not self.stopped.wait(LOST_MESSAGE_CHECK_S):
            try:
                self.check()
            except Exception:  # noqa: BLE001 - try again at the next interval
                log.warning("lost-message check failed", exc_info=True)

    def stop(self) -> None:
        self.stopped.set()


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
