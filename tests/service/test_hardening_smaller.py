"""The smaller findings of issue 21 (item 9): /jobs/validate reads sharded models and never shows a server
path; a finished search's trials stay in it; the OpenAPI document says what the service does (the spec is
required, Idempotency-Key is bounded, artifacts have their own media types); a lost `advance_search`
continuation is recovered like a lost job, because its message file names the search."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from safetensors.torch import save_file
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker
from svc_helpers import SPEC, small_state_dict

from mcs_common import fs_broker
from mcs_common.db import init_db, make_engine, make_session_factory
from mcs_common.models import Job, JobState, utcnow
from mcs_common.settings import Settings
from service import jobs
from service.auth import LOCAL_PRINCIPAL
from service.errors import JobConflict
from service.maintenance import LOST_MESSAGE_AGE_S, LostMessageWatch

MLP = {"arch": "mlp", "kwargs": {"sizes": [48, 32, 10]}}


def write_shards(folder: Path) -> list[Path]:
    state = small_state_dict()
    names = sorted(state)
    folder.mkdir(parents=True, exist_ok=True)
    weight_map = {}
    for i, part in enumerate((names[:2], names[2:])):
        shard = f"model-{i + 1:05d}-of-00002.safetensors"
        save_file({n: state[n] for n in part}, str(folder / shard))
        weight_map.update(dict.fromkeys(part, shard))
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return sorted(folder.iterdir())


def test_validate_reads_a_sharded_model_and_never_shows_a_server_path(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    paths = write_shards(tmp_path / "ckpt")
    files = [("model", (p.name, p.read_bytes())) for p in paths]
    fine = client.post("/jobs/validate", files=files, data={"spec": json.dumps({"model": MLP})})
    assert fine.status_code == 200, fine.text
    assert fine.json()["ok"] is True
    wrong = client.post(
        "/jobs/validate", files=files, data={"spec": json.dumps({"model": {"arch": "lenet300"}})}
    )
    assert wrong.status_code == 422 and "missing tensor" in wrong.text, wrong.text
    broken = [(role, (name, data if not name.endswith("json") else b'{"weight_map": {"x": "a b"}}'))
              for role, (name, data) in files]  # fmt: skip
    refused = client.post("/jobs/validate", files=broken, data={"spec": json.dumps({"model": MLP})})
    assert refused.status_code == 415, refused.text
    for response in (fine, wrong, refused):
        assert str(settings.data_dir) not in response.text and "/uploads/" not in response.text


def test_a_trial_of_a_finished_search_is_not_deleted_alone(settings: Settings) -> None:
    engine = make_engine(settings.effective_database_url)
    init_db(engine)
    factory = make_session_factory(engine)
    with factory() as session:
        parent = Job(spec={"search": {"mode": "grid"}}, inputs={}, state=JobState.succeeded)
        session.add(parent)
        session.flush()
        trials = [
            Job(spec={}, inputs={}, state=JobState.succeeded, parent_id=parent.id, trial_index=i)
            for i in range(3)
        ]
        session.add_all(trials)
        session.commit()
        parent_id, trial_id = parent.id, trials[1].id
    with factory() as session:
        with pytest.raises(JobConflict, match="deleted with its search"):
            jobs.delete_job(session, settings, trial_id, LOCAL_PRINCIPAL)
        search = jobs.get_job(session, parent_id, LOCAL_PRINCIPAL)
        assert len(jobs.children_of(session, search) or []) == 3  # "3 trials" stays true


def test_the_openapi_document_says_what_the_service_does(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    upload = document["paths"]["/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert upload["required"] == ["model"]
    assert upload["oneOf"] == [{"required": ["spec"]}, {"required": ["spec_file"]}]  # exactly one spec
    key = next(p for p in document["paths"]["/jobs"]["post"]["parameters"] if p["name"] == "Idempotency-Key")
    schema = key["schema"].get("anyOf", [key["schema"]])[0]
    assert schema["minLength"] == 1 and schema["maxLength"] == 255 and "pattern" in schema
    content = document["paths"]["/jobs/{job_id}/artifacts/{name}"]["get"]["responses"]["200"]["content"]
    assert {"application/octet-stream", "application/json", "text/html", "text/csv", "image/png"} <= set(
        content
    )
    assert client.post("/jobs", files={"model": ("m.safetensors", b"x")}).status_code == 422  # no spec
    bad_key = client.post(
        "/jobs",
        files={"model": ("m.safetensors", b"x")},
        data={"spec": json.dumps(SPEC)},
        headers={"Idempotency-Key": "x" * 256},
    )
    assert bad_key.status_code == 422 and "Idempotency-Key" in bad_key.text


class Recorder:
    def __init__(self) -> None:
        self.advanced: list[uuid.UUID] = []
        self.sent: list[uuid.UUID] = []

    def send_advance(self, job_id: uuid.UUID, queue: str) -> None:
        self.advanced.append(job_id)

    def send(self, job_id: uuid.UUID, queue: str, time_limit: int | None = None) -> None:
        self.sent.append(job_id)


def _embedded(tmp_path: Path) -> tuple[Settings, sessionmaker[Session]]:
    settings = Settings(data_dir=tmp_path / "data", broker_url=None, reaper_interval_s=0)  # type: ignore[call-arg]
    settings.ensure_dirs()
    engine = make_engine(settings.effective_database_url)
    init_db(engine)
    return settings, make_session_factory(engine)


def test_an_advance_message_names_its_search() -> None:
    job_id = str(uuid.uuid4())
    from mcs_common.broker import advance_task_id

    task_id = advance_task_id(job_id)
    assert fs_broker.task_id_of(fs_broker.message_name("mcs-cpu", task_id)) == task_id
    assert fs_broker.search_of(task_id) == job_id


def test_a_lost_continuation_is_recovered_like_a_lost_job(tmp_path: Path) -> None:
    """A search waiting between rounds, its trials all ended, no message left for it: the lost-message
    watch sends a continuation within seconds (it waited for MCS_REQUEUE_AFTER_S, 616 s measured)."""
    from mcs_common.broker import advance_task_id

    settings, factory = _embedded(tmp_path)
    with factory() as session:
        lost = Job(spec={"search": {}}, inputs={}, state=JobState.running, started_at=utcnow())
        waiting = Job(spec={"search": {}}, inputs={}, state=JobState.running, started_at=utcnow())
        session.add_all([lost, waiting])
        session.flush()
        for parent in (lost, waiting):
            session.add(Job(spec={}, inputs={}, state=JobState.succeeded, parent_id=parent.id, trial_index=0))
        old = utcnow() - __import__("datetime").timedelta(seconds=LOST_MESSAGE_AGE_S + 1)
        session.execute(update(Job).where(Job.parent_id.is_(None)).values(updated_at=old))
        session.commit()
        lost_id, waiting_id = lost.id, waiting.id
    folder = settings.broker_dir / "messages"
    (folder / fs_broker.message_name("mcs-cpu", advance_task_id(str(waiting_id)))).write_text("{}")
    recorder: Any = Recorder()
    LostMessageWatch(settings, factory, recorder).check()
    assert recorder.advanced == [lost_id]  # the other's continuation is still waiting in the folder
    LostMessageWatch(settings, factory, recorder).check()
    assert recorder.advanced == [lost_id]  # touched: not again at once
