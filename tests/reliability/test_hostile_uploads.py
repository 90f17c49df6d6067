"""Bad input: every hostile upload is refused with a clear 4xx problem+json, no code runs, nothing is
left behind, and the API keeps serving. Paths from a client never leave the job's folder."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import torch
from svc_helpers import SPEC, write_model

from compression_core.format import encode_records
from compression_core.records import TensorRecord
from mcs_common.models import Job, JobState
from mcs_common.storage import publish

from .conftest import Api
from .hostile import hostile_models

PROBLEM = "application/problem+json"


def post_model(api: Api, headers: dict[str, str], filename: str, data: bytes) -> object:
    return api.client.post(
        "/jobs", files={"model": (filename, data)}, data={"spec": json.dumps(SPEC)}, headers=headers
    )


def assert_nothing_left(api: Api, headers: dict[str, str]) -> None:
    assert api.client.get("/jobs", headers=headers).json()["total"] == 0
    assert list(api.settings.staging_dir.iterdir()) == []
    assert list(api.settings.jobs_dir.iterdir()) == []
    assert api.client.get("/healthz").status_code == 200


def test_hostile_models_are_refused_and_run_nothing(api: Api, tmp_path: Path) -> None:
    me = api.token("me")
    marker = tmp_path / "pwned"
    for label, (filename, data) in hostile_models(str(marker)).items():
        response = post_model(api, me, filename, data)
        assert response.status_code == 415, (label, response.text)
        problem = response.json()
        assert response.headers["content-type"] == PROBLEM
        assert problem["title"] == "Unsupported model file" and problem["errors"][0]["field"] == "model", (
            label
        )
        assert problem["detail"].startswith("model: ") and len(problem["detail"]) > 20, label
    assert not marker.exists()
    assert_nothing_left(api, me)


def test_forged_sizes_are_named_in_the_refusal(api: Api, tmp_path: Path) -> None:
    models = hostile_models(str(tmp_path / "m"))
    detail = post_model(api, api.token("me"), *models["data record claims 100 GB"]).json()["detail"]
    assert "claims 100000000000 bytes" in detail
    detail = post_model(api, api.token("me2"), *models["os.system pickle"]).json()["detail"]
    assert "refused" in detail


@pytest.mark.parametrize(
    "filename", ["model.exe", "model.txt", "model.zip", "model.pkl", "model.safetensors.sh"]
)
def test_wrong_extensions_are_refused_by_name(api: Api, tmp_path: Path, filename: str) -> None:
    data = write_model(tmp_path).read_bytes()
    response = post_model(api, api.token("me"), filename, data)
    assert response.status_code == 415
    assert "unsupported file extension" in response.json()["detail"]
    assert Path(filename).suffix in response.json()["detail"]


def test_a_compressed_bin_is_not_a_state_dict(api: Api) -> None:
    record = TensorRecord("w", (4,), torch.float32, values=torch.ones(4))
    response = post_model(api, api.token("me"), "model.bin", encode_records([record]).data)
    assert response.status_code == 415


def test_an_upload_over_the_limit_is_413_and_cut_short(api: Api, tmp_path: Path) -> None:
    small = api.settings.model_copy(update={"max_upload_bytes": 5000})
    api.client.app.state.settings = small  # type: ignore[attr-defined]
    big = tmp_path / "big.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(4000)}, str(big))
    response = post_model(api, api.token("me"), big.name, big.read_bytes())
    assert response.status_code == 413 and "MCS_MAX_UPLOAD_BYTES=5000" in response.json()["detail"]
    assert list(small.staging_dir.iterdir()) == []


def test_client_filenames_never_become_paths(api: Api, tmp_path: Path) -> None:
    me = api.token("me")
    data = write_model(tmp_path).read_bytes()
    for filename in ("../../../escape.safetensors", "/etc/escape.safetensors", "..\\..\\escape.safetensors",
                     "%2e%2e%2fescape.safetensors", "a/../../escape.safetensors"):  # fmt: skip
        response = api.client.post(
            "/jobs",
            files={"model": (filename, data), "spec_file": ("../../spec.json", json.dumps(SPEC).encode())},
            headers=me,
        )
        assert response.status_code == 202, (filename, response.text)
        folder = api.settings.jobs_dir / response.json()["id"]
        assert sorted(p.name for p in (folder / "inputs").iterdir()) == [
            "model.safetensors",
            "spec_file.json",
        ]
    root = api.settings.data_dir.parent
    assert not list(root.rglob("escape*")) and not Path("/etc/escape.safetensors").exists()


def fake_finished_job(api: Api, headers: dict[str, str], tmp_path: Path) -> str:
    """A job made to look finished, with real artifact files (no worker needed)."""
    job_id = api.client.post(
        "/jobs",
        files={"model": ("m.safetensors", write_model(tmp_path).read_bytes())},
        data={"spec": json.dumps(SPEC)},
        headers=headers,
    ).json()["id"]
    records = []
    for name in ("model.pth", "model.bin", "metrics.json"):
        source = tmp_path / name
        source.write_bytes(name.encode() * 100)
        records.append(publish(api.settings, job_id, source, name))
    with api.client.app.state.sessions() as session:  # type: ignore[attr-defined]
        job = session.get(Job, uuid.UUID(job_id))
        assert job is not None
        job.state, job.artifacts = JobState.succeeded, records
        session.commit()
    (api.settings.data_dir / "secret.txt").write_text("top secret")
    return job_id


def test_artifact_names_never_leave_the_job_folder(api: Api, tmp_path: Path) -> None:
    me = api.token("me")
    job_id = fake_finished_job(api, me, tmp_path)
    base = f"/jobs/{job_id}/artifacts"
    good = api.client.get(f"{base}/model.bin", headers=me)
    assert good.status_code == 200 and good.content == b"model.bin" * 100
    attempts = [
        f"{base}/..%2F..%2F..%2Fsecret.txt",
        f"{base}/..%2f..%2fmcs.db",
        f"{base}/%2e%2e%2f%2e%2e%2fmcs.db",
        f"{base}/..%252F..%252Fmcs.db",
        f"{base}/%2Fetc%2Fpasswd",
        f"{base}/model.bin%00.txt",
        f"{base}/inputs%2Fmodel.safetensors",
        "/jobs/..%2F..%2Fsecret.txt/artifacts/model.bin",
        f"/jobs/{job_id}%2F..%2F..%2F/artifacts/model.bin",
        f"{base}/../../../secret.txt",
    ]
    for url in attempts:
        response = api.client.get(url, headers=me)
        assert response.status_code in (404, 422), (url, response.status_code)
        assert b"top secret" not in response.content and b"SQLite" not in response.content
