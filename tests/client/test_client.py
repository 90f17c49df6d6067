from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest

from client import (
    BadRequest,
    ChecksumMismatch,
    Client,
    ClientError,
    NotFound,
    ServerError,
    TransportError,
    WaitTimeout,
)
from tests.client.fake_service import FakeJob, FakeService, succeeded_job

SPEC = {"version": 1, "rules": []}


def test_submit_streams_files_with_auth_and_idempotency(
    fake: FakeService, fake_client: Client, model_file: Path, tmp_path: Path
) -> None:
    data = tmp_path / "digits.npz"
    data.write_bytes(b"D" * 1000)
    progress: list[tuple[int, int]] = []
    job = fake_client.submit(
        model_file, SPEC, data=data, on_upload_progress=lambda s, t: progress.append((s, t))
    )

    assert job.id == "job-1" and job.state == "queued"
    (request,) = fake.requests
    assert request.headers["Authorization"] == "Bearer s3cret"
    assert len(request.headers["Idempotency-Key"]) >= 16
    body = fake.bodies[0]
    assert model_file.read_bytes() in body and b"D" * 1000 in body
    assert json.dumps(SPEC).encode() in body
    assert int(request.headers["Content-Length"]) == len(body)  # sized from the files, not buffered
    total = model_file.stat().st_size + 1000
    assert progress[-1] == (total, total)
    assert len(progress) >= 4  # advanced chunk by chunk (256 KiB model in 64 KiB reads)
    assert all(t == total for _, t in progress)


def test_submit_retries_503_with_the_same_idempotency_key(
    fake: FakeService, fake_client: Client, model_file: Path, sleeps: list[float]
) -> None:
    fake.fail_next = [503, 502, None]
    progress: list[int] = []
    job = fake_client.submit(
        model_file, SPEC, idempotency_key="key-1", on_upload_progress=lambda s, t: progress.append(s)
    )
    assert job.id == "job-1"
    assert [r.headers["Idempotency-Key"] for r in fake.requests] == ["key-1"] * 3
    assert all(model_file.read_bytes() in body for body in fake.bodies)  # the file is re-sent in full
    assert len(sleeps) == 2 and 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0
    assert progress[-1] == model_file.stat().st_size
    # a second submit with that key (e.g. the client restarted) gets the same job, not a new one
    assert fake_client.submit(model_file, SPEC, idempotency_key="key-1").id == "job-1"
    assert len(fake.jobs) == 1


def test_429_honours_retry_after(fake: FakeService, fake_client: Client, sleeps: list[float]) -> None:
    fake.add_job(FakeJob(id="j", states=[{"state": "running"}]))
    fake.fail_next = [429]
    fake.retry_after = "7"
    assert fake_client.get("j").state == "running"
    assert sleeps == [7.0]


def test_connection_errors_are_retried(fake: FakeService, fake_client: Client, sleeps: list[float]) -> None:
    fake.add_job(FakeJob(id="j", states=[{"state": "queued"}]))
    fake.fail_next = [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")]
    assert fake_client.get("j").state == "queued"
    assert len(fake.requests) == 3 and len(sleeps) == 2


def test_retries_give_up(fake: FakeService, fake_client: Client, sleeps: list[float]) -> None:
    fake.add_job(FakeJob(id="j", states=[{"state": "queued"}]))
    fake.fail_next = [503] * 4
    with pytest.raises(ServerError) as info:
        fake_client.get("j")
    assert info.value.status == 503 and len(sleeps) == 3  # 4 attempts in all
    fake.fail_next = [httpx.ConnectError("down")] * 4
    with pytest.raises(TransportError, match="after 4 attempts"):
        fake_client.get("j")


def test_problem_details_come_back_in_the_exception(
    fake: FakeService, fake_client: Client, model_file: Path
) -> None:
    with pytest.raises(BadRequest) as info:
        fake_client.submit(model_file, {"invalid": True})
    err = info.value
    assert err.status == 422 and err.title == "Invalid spec"
    assert err.errors[0]["loc"] == ["rules", 0, "method"]
    assert "rules.0.method: unknown method 'magic'" in str(err)
    assert len(fake.requests) == 1  # a 4xx is not retried
    with pytest.raises(NotFound, match="no job nope"):
        fake_client.get("nope")


def test_local_input_errors(fake_client: Client, tmp_path: Path, model_file: Path) -> None:
    with pytest.raises(ClientError, match="model file not found"):
        fake_client.submit(tmp_path / "missing.pth", SPEC)
    with pytest.raises(ClientError, match="not valid JSON"):
        fake_client.submit(model_file, "{not json")
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(SPEC))
    assert fake_client.submit(model_file, spec_file).state == "queued"


def test_wait_reports_each_change_and_returns_the_final_job(fake: FakeService, fake_client: Client) -> None:
    fake.add_job(succeeded_job("j", {"totals": {"ratio": 10.0}}, {"model.bin": b"x"}))
    seen = []
    job = fake_client.wait(
        "j", on_progress=lambda j: seen.append((j.state, j.progress.fraction)), poll_interval=1
    )
    assert job.state == "succeeded" and job.metrics == {"totals": {"ratio": 10.0}}
    assert seen == [("queued", 0.0), ("running", 0.4), ("running", 0.9), ("succeeded", 1.0)]


def test_wait_times_out(fake: FakeService, fake_client: Client, sleeps: list[float]) -> None:
    fake.add_job(FakeJob(id="j", states=[{"state": "running"}]))
    with pytest.raises(WaitTimeout, match="still running after 5 s"):
        fake_client.wait("j", timeout=5, poll_interval=2)
    assert sum(sleeps) == pytest.approx(5.0)


def test_list_cancel_delete(fake: FakeService, fake_client: Client) -> None:
    fake.add_job(FakeJob(id="a", states=[{"state": "queued"}]))
    fake.add_job(FakeJob(id="b", states=[{"state": "running"}]))
    assert [j.id for j in fake_client.list()] == ["a", "b"]
    assert [j.id for j in fake_client.list(state="running")] == ["b"]
    assert fake.requests[-1].url.params["state"] == "running"
    assert fake_client.cancel("a").state == "cancelled"
    fake_client.delete("a")
    with pytest.raises(NotFound):
        fake_client.get("a")


def test_download_verifies_every_artifact(fake: FakeService, fake_client: Client, tmp_path: Path) -> None:
    artifacts = {"model.bin": b"\x01" * 5000, "metrics.json": b"{}", "plots/bits.png": b"\x89PNG"}
    fake.add_job(succeeded_job("j", {}, artifacts))
    files: list[str] = []
    paths = fake_client.download("j", tmp_path / "out", on_file=lambda a, p: files.append(a.name))
    assert {p.relative_to(tmp_path / "out").as_posix(): p.read_bytes() for p in paths} == artifacts
    assert files == list(artifacts)


def test_download_detects_a_checksum_mismatch(fake: FakeService, fake_client: Client, tmp_path: Path) -> None:
    fake.add_job(succeeded_job("j", {}, {"model.bin": b"\x01" * 5000}))
    fake.corrupt.add("model.bin")
    out = tmp_path / "out"
    with pytest.raises(ChecksumMismatch) as info:
        fake_client.download("j", out)
    assert info.value.expected == hashlib.sha256(b"\x01" * 5000).hexdigest()
    assert list(out.iterdir()) == []  # neither the bad file nor a temporary is left


def test_download_rejects_an_announced_hash_that_does_not_match(
    fake: FakeService, fake_client: Client, tmp_path: Path
) -> None:
    fake.add_job(succeeded_job("j", {}, {"model.pth": b"weights"}))
    fake.announce_sha["model.pth"] = "0" * 64
    with pytest.raises(ChecksumMismatch, match="model.pth"):
        fake_client.download("j", tmp_path)


def test_download_refuses_names_that_escape_the_folder(
    fake: FakeService, fake_client: Client, tmp_path: Path
) -> None:
    fake.add_job(succeeded_job("j", {}, {"../evil": b"x"}))
    with pytest.raises(ClientError, match="unsafe artifact name"):
        fake_client.download("j", tmp_path / "out")
    assert not (tmp_path / "evil").exists()


def test_download_refetches_after_a_dropped_connection(
    fake: FakeService, fake_client: Client, tmp_path: Path, sleeps: list[float]
) -> None:
    fake.add_job(succeeded_job("j", {}, {"model.bin": b"abc"}))
    fake.fail_next = [None, httpx.RemoteProtocolError("peer closed")]  # listing ok, first fetch dropped
    (path,) = fake_client.download("j", tmp_path)
    assert path.read_bytes() == b"abc" and len(sleeps) == 1
