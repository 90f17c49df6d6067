"""Sharded checkpoints over HTTP: several `model` parts named as in the Hugging Face layout (issue 14)."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient
from safetensors.torch import save_file
from svc_helpers import SPEC, small_state_dict

from mcs_common.settings import Settings

PROBLEM = "application/problem+json"


def write_shards(folder: Path) -> list[Path]:
    state = small_state_dict()
    names = sorted(state)
    folder.mkdir(parents=True, exist_ok=True)
    weight_map = {}
    for i, part in enumerate((names[:2], names[2:])):
        file = f"model-{i + 1:05d}-of-00002.safetensors"
        save_file({n: state[n] for n in part}, str(folder / file))
        weight_map.update(dict.fromkeys(part, file))
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map})
    )
    return sorted(folder.iterdir())


def post(client: TestClient, paths: list[Path]) -> object:
    files = [("model", (path.name, path.read_bytes())) for path in paths]
    return client.post("/jobs", files=files, data={"spec": json.dumps(SPEC)})


def test_shards_and_index_become_one_model_input(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    paths = write_shards(tmp_path / "ckpt")
    response = post(client, paths)
    assert response.status_code == 202, response.text
    inputs = settings.jobs_dir / response.json()["id"] / "inputs"
    assert sorted(p.name for p in inputs.iterdir()) == [p.name for p in paths]
    assert all((inputs / p.name).read_bytes() == p.read_bytes() for p in paths)


def test_shards_without_their_index_or_with_a_bad_index_are_refused(
    client: TestClient, tmp_path: Path
) -> None:
    paths = write_shards(tmp_path / "ckpt")
    shards = [p for p in paths if p.name.endswith(".safetensors")]
    missing = post(client, shards)
    assert missing.status_code == 422 and missing.headers["content-type"] == PROBLEM
    assert "index" in missing.json()["detail"]
    incomplete = post(client, [shards[0], paths[-1]])  # the index names a shard that was not sent
    assert incomplete.status_code == 415 and "missing" in incomplete.json()["detail"]  # not a usable model


def test_shard_names_never_become_other_paths(client: TestClient, settings: Settings, tmp_path: Path) -> None:
    paths = write_shards(tmp_path / "ckpt")
    files = [("model", ("../" + p.name if i == 0 else p.name, p.read_bytes())) for i, p in enumerate(paths)]
    response = client.post("/jobs", files=files, data={"spec": json.dumps(SPEC)})
    assert (
        response.status_code == 422
    )  # the hostile name is a plain model part, which cannot sit beside an index
    assert not any(settings.jobs_dir.glob("*/inputs/*")) if settings.jobs_dir.exists() else True


def _tar(paths: list[Path], target: Path, *, extra: dict[str, bytes] | None = None) -> Path:
    import io
    import tarfile

    with tarfile.open(target, "w") as tar:
        for path in paths:
            tar.add(path, arcname=f"ckpt/{path.name}")
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return target


def test_one_tar_is_unpacked_into_the_same_inputs(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    paths = write_shards(tmp_path / "ckpt")
    archive = _tar(paths, tmp_path / "ckpt.tar")
    response = client.post(
        "/jobs", files={"model": (archive.name, archive.read_bytes())}, data={"spec": json.dumps(SPEC)}
    )
    assert response.status_code == 202, response.text
    inputs = settings.jobs_dir / response.json()["id"] / "inputs"
    assert sorted(p.name for p in inputs.iterdir()) == [p.name for p in paths]  # the tar itself is gone
    assert all((inputs / p.name).read_bytes() == p.read_bytes() for p in paths)


def test_a_tar_with_other_members_is_refused(client: TestClient, tmp_path: Path) -> None:
    paths = write_shards(tmp_path / "ckpt")
    for extra in ({"../evil-00001-of-00002.safetensors": b"x"}, {"run.sh": b"echo"}):
        archive = _tar(paths, tmp_path / "bad.tar", extra=extra)
        response = client.post(
            "/jobs", files={"model": (archive.name, archive.read_bytes())}, data={"spec": json.dumps(SPEC)}
        )
        assert response.status_code == 422 and "tar member" in response.json()["detail"], response.text


def test_a_sharded_job_runs_in_a_real_worker(tmp_path: Path, redis_url: str, session_tag: str) -> None:
    """Submit shards, a real Celery worker streams them; model.bin decodes to the library's own result."""
    from conftest import make_settings
    from svc_helpers import WorkerProcess, wait_for

    from compression_core.format import decode_state_dict
    from compression_core.spec import Spec
    from compression_core.streaming.pipeline import compress_stream
    from service.app import create_app

    settings = make_settings(
        tmp_path / "data", f"sqlite:///{tmp_path / 'mcs.db'}", redis_url, f"shard-{session_tag}"
    )
    paths = write_shards(tmp_path / "ckpt")
    with TestClient(create_app(settings)) as client:
        worker = WorkerProcess(settings, tmp_path / "worker.log")
        try:
            worker.wait_ready()
            response = post(client, paths)
            assert response.status_code == 202, response.text
            job = wait_for(client, response.json()["id"], timeout=120)
        finally:
            worker.stop()
        assert job["state"] == "succeeded", job
        names = [a["name"] for a in job["artifacts"]]
        assert names == ["model.bin", "metrics.json", "report.html"]  # no model.pth (sharded): metrics alone
        model_bin = client.get(f"/jobs/{job['id']}/artifacts/model.bin").content
        report = client.get(f"/jobs/{job['id']}/artifacts/report.html").text
    reference = tmp_path / "reference"
    compress_stream(tmp_path / "ckpt", Spec.model_validate(SPEC), reference, workers=1)
    ours, expected = decode_state_dict(model_bin), decode_state_dict(reference / "model.bin")
    assert ours.keys() == expected.keys() and all(ours[n].equal(expected[n]) for n in expected)
    # the per-layer table from metrics.json: every tensor of the checkpoint is named
    assert report.lower().startswith("<!doctype html") and all(name in report for name in ours)
    assert job["metrics"]["streaming"]["input_files"] == 2
