"""The embedded broker: Kombu's filesystem transport, made safe for a reader racing a writer.

Kombu's own channel creates a message file and then writes it, so a worker listing the folder in between
reads an empty file, dies on the JSON error, and the message is gone (issue 10, item 3). Here

- a send writes a hidden temporary file in the same folder and renames it in: a reader sees the whole
  message or nothing (rename is atomic within one filesystem);
- a receive claims a file by renaming it (one winner among workers; Kombu moved it to /tmp, a copy across
  filesystems), and a message that still cannot be parsed is logged and skipped, never fatal;
- a message file's name carries its task id (the job id; a search's continuation: `<id>-advance-<hex>`),
  so the API can tell, from one directory listing, that a queued job or a waiting search has no message
  left and send it again (`service.maintenance`).

Registered as the Kombu transport `mcsfs://`; `mcs_common.broker` uses it whenever the settings say
embedded (`filesystem://` or no broker URL).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import uuid
from pathlib import Path
from queue import Empty
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

log = logging.getLogger(__name__)

SCHEME = "mcsfs"
_TASK_ID = re.compile(r"^[0-9A-Za-z-]{1,64}$")


def message_name(queue: str, task_id: str | None) -> str:
    """`<ms>_<random>-<task id>.<queue>.msg`: Kombu's ordering and queue suffix, plus the task id."""
    tag = task_id if task_id and _TASK_ID.match(task_id) else ""
    return f"{round(monotonic() * 1000)}_{uuid.uuid4().hex}-{tag}.{queue}.msg"


def task_id_of(filename: str) -> str | None:
    """The task id a message file's name carries, or None (a foreign or temporary file)."""
    stem, dot, rest = filename.partition(".")
    if not dot or not rest.endswith(".msg") or "-" not in stem:
        return None
    return stem.split("-", 1)[1] or None


ADVANCE_TAG = "-advance-"  # a search's continuation: task id `<search id>-advance-<8 hex>`


def search_of(task_id: str) -> str | None:
    """The search a continuation's task id names, or None for a job's own task id."""
    search, tag, _ = task_id.partition(ADVANCE_TAG)
    return search if tag else None


def queued_task_ids(folder: Path) -> set[str]:
    """Task ids of every message waiting in `folder` (one directory listing, no file read)."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return set()
    return {task_id for task_id in map(task_id_of, names) if task_id}


def _write(handle: Any, data: bytes) -> None:
    handle.write(data)


class AtomicChannel(filesystem.Channel):
    """Sends by rename and receives by claim; skips unreadable messages (see the module docstring)."""

    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        headers = payload.get("headers") if isinstance(payload, dict) else None
        task_id = headers.get("id") if isinstance(headers, dict) else None
        folder = self.data_folder_out
        final = os.path.join(folder, message_name(queue, task_id))
        temporary = os.path.join(folder, f".{uuid.uuid4().hex}.tmp")  # never matches `<x>.<queue>.msg`
        try:
            with open(temporary, "wb") as handle:
                _write(handle, str_to_bytes(dumps(payload)))
            os.rename(temporary, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.remove(temporary)
            raise ChannelError(f"Cannot add a message to {folder!r}") from exc

    def _get(self, queue: Any, timeout: Any = None) -> Any:
        wanted = f"{queue}.msg"
        folder = self.data_folder_in
        for filename in sorted(os.listdir(folder)):
            if filename.partition(".")[2] != wanted:
                continue
            claimed = os.path.join(folder, f".claimed-{uuid.uuid4().hex}.tmp")
            try:
                os.rename(os.path.join(folder, filename), claimed)
            except OSError:
                continue  # another worker claimed it first
            try:
                with open(claimed, "rb") as handle:
                    payload = handle.read()
            except OSError as exc:
                log.error("skipped broker message %s: unreadable (%r)", filename, exc)
                continue
            finally:
                self._dispose(claimed, filename)
            try:
                message: dict[str, Any] = loads(bytes_to_str(payload))
            except ValueError as exc:
                log.error(
                    "skipped broker message %s: %d bytes that are not JSON (%s)", filename, len(payload), exc
                )
                continue
            return message
        raise Empty()

    def _dispose(self, claimed: str, filename: str) -> None:
        try:
            if self.store_processed:
                os.replace(claimed, os.path.join(self.processed_folder, filename))
            else:
                os.remove(claimed)
        except OSError:
            log.warning("could not remove the claimed broker message %s", claimed, exc_info=True)


class Transport(filesystem.Transport):
    Channel = AtomicChannel
    driver_type = SCHEME
    driver_name = SCHEME


TRANSPORT_ALIASES.setdefault(SCHEME, f"{__name__}:Transport")
