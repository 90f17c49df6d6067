"""The embedded broker never drops a message (issue 10, item 3): Kombu's filesystem channel loses a
message a reader opens before the writer has written it; ours sends by rename, skips unreadable files,
and a queued job whose message is gone is sent again within seconds."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from queue import Empty
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kombu import Connection
from kombu.transport import filesystem

from mcs_common import fs_broker
from mcs_common.models import Job, JobState, utcnow
from mcs_common.settings import Settings
from service.app import create_app
from service.maintenance import LOST_MESSAGE_AGE_S, LostMessageWatch


def options(folder: Path) -> dict[str, Any]:
    for sub in ("messages", "control"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(folder / "messages"),
        "data_folder_out": str(folder / "messages"),
        "control_folder": str(folder / "control"),
        "polling_interval": 0.01,
    }


@pytest.fixture
def slow_dumps(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Both channels serialise inside the send: a slow serialiser widens the write window to 0.5 s."""
    started = threading.Event()
    real = filesystem.dumps

    def slow(payload: object) -> str:
        started.set()
        time.sleep(0.5)
        return str(real(payload))

    monkeypatch.setattr(filesystem, "dumps", slow)
    monkeypatch.setattr(fs_broker, "dumps", slow)
    return started


def race(channel: Any, started: threading.Event) -> object:
    """Send in a thread; read while the send is writing; return what the read got (or the error)."""
    writer = threading.Thread(target=channel._put, args=("q", {"headers": {"id": "job-1"}, "body": "x"}))
    writer.start()
    started.wait(5)
    time.sleep(0.05)
    try:
        got: object = channel._get("q")
    except Exception as exc:  # noqa: BLE001 - the outcome under test
        got = exc
    writer.join()
    return got


def test_kombus_own_channel_loses_a_message_read_mid_write(
    tmp_path: Path, slow_dumps: threading.Event
) -> None:
    """The reproduction: the reader gets an empty file (JSON error) and the message is gone for good."""
    with Connection("filesystem://", transport_options=options(tmp_path)) as connection:
        channel = connection.default_channel
        got = race(channel, slow_dumps)
        assert isinstance(got, ValueError)  # json.JSONDecodeError: what killed the worker
        with pytest.raises(Empty):
            channel._get("q")


def test_our_channel_sends_atomically(tmp_path: Path, slow_dumps: threading.Event) -> None:
    with Connection(f"{fs_broker.SCHEME}://", transport_options=options(tmp_path)) as connection:
        channel = connection.default_channel
        got = race(channel, slow_dumps)
        assert isinstance(got, Empty)  # nothing visible until the rename
        message = channel._get("q")
        assert message["headers"]["id"] == "job-1"
        assert list((tmp_path / "messages").iterdir()) == []


def test_an_unreadable_message_is_skipped_not_fatal(tmp_path: Path) -> None:
    with Connection(f"{fs_broker.SCHEME}://", transport_options=options(tmp_path)) as connection:
        channel = connection.default_channel
        (tmp_path / "messages" / "1_dead-.q.msg").write_bytes(b"")
        (tmp_path / "messages" / "2_dead-.q.msg").write_bytes(b'{"half": ')
        channel._put("q", {"headers": {"id": "job-2"}})
        assert fs_broker.queued_task_ids(tmp_path / "messages") == {"job-2"}
        assert channel._get("q")["headers"]["id"] == "job-2"
        with pytest.raises(Empty):
            channel._get("q")


PRODUCER = """
import sys
from kombu import Connection
import mcs_common.fs_broker
opts = {options!r}
with Connection("mcsfs://", transport_options=opts) as connection:
    queue = connection.SimpleQueue("jobs")
    for n in range({count}):
        queue.put({{"n": n}}, headers={{"id": f"job-{{n}}"}})
    queue.close()
"""


def test_a_thousand_messages_while_a_worker_reads_arrive_once_each(tmp_path: Path) -> None:
    count, opts = 1000, options(tmp_path)
    producer = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(PRODUCER.format(options=opts, count=count))]
    )
    seen: list[int] = []
    deadline = time.monotonic() + 120  # a bound for a loaded 2-core machine, not a throughput
    with Connection(f"{fs_broker.SCHEME}://", transport_options=opts) as connection:
        queue = connection.SimpleQueue("jobs")
        while len(seen) < count and time.monotonic() < deadline:
            try:
                message = queue.get(timeout=1)
            except Empty:
                continue
            seen.append(message.payload["n"])
            message.ack()
        queue.close()
    assert producer.wait(30) == 0
    assert sorted(seen) == list(range(count)), (len(seen), len(set(seen)))
    assert [p.name for p in (tmp_path / "messages").iterdir()] == []  # no temporary or claimed leftovers


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / "data", auth="disabled", reaper_interval_s=0)  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as client:
        yield client


def test_a_queued_job_whose_message_is_gone_is_sent_again(embedded: TestClient) -> None:
    app = embedded.app
    settings: Settings = app.state.settings  # type: ignore[attr-defined]
    folder = settings.broker_dir / "messages"
    old = utcnow() - timedelta(seconds=LOST_MESSAGE_AGE_S + 1)
    lost, waiting, young = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    with app.state.sessions() as session:  # type: ignore[attr-defined]
        for job_id, updated in ((lost, old), (waiting, old), (young, utcnow())):
            session.add(
                Job(id=job_id, state=JobState.queued, queue="cpu", spec={}, inputs={}, updated_at=updated)
            )
        session.commit()
    app.state.dispatcher.send(waiting, "cpu")  # type: ignore[attr-defined]
    watch = LostMessageWatch(settings, app.state.sessions, app.state.dispatcher)  # type: ignore[attr-defined]
    assert watch.check() == [lost]
    assert {str(lost), str(waiting)} <= fs_broker.queued_task_ids(folder)
    assert str(young) not in fs_broker.queued_task_ids(folder)
    assert watch.check() == []  # just sent: its message is there now
    body = json.loads(next(p for p in folder.iterdir() if str(lost) in p.name).read_text())
    assert body["headers"]["id"] == str(lost)
