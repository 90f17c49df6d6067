"""The API's memory per submission is O(header) (issue 10 item 1, issue 14): it never loads an upload's
tensors. Measured on a real API process (`mcs serve --no-worker` under uvicorn) from the kernel's own
peak-RSS accounting, reset just before the submissions.

The 2 GiB checkpoint is a sparse file (its header, then a hole up to its size), streamed from the file by
httpx in 64 KiB reads: the client neither holds nor writes the data; the API receives and stores all of it."""

from __future__ import annotations

import json
import struct
import threading
import time
from pathlib import Path

import httpx
from svc_helpers import SPEC, write_model

from mcs_common.settings import Settings

from .hostile import stride_zero_view_pth
from .memory import peak_mib, reset_peak
from .stack import free_port, stack_env, start_api

BIG_BYTES = 2 * 1024**3  # tensor data; over the default MCS_MAX_UPLOAD_BYTES (2 GiB) with its header
BOUND_MIB = 100  # the bound: python-multipart buffers, the header, allocator noise


def big_checkpoint(folder: Path) -> Path:
    """A 2 GiB safetensors file of eight 256 MiB bf16 matrices, all zero: the header written, the rest a
    hole (no disk blocks, no client memory)."""
    rows, cols, count = 16384, 8192, 8
    assert rows * cols * 2 * count == BIG_BYTES
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    for i in range(count):
        start = i * rows * cols * 2
        header[f"layer{i}.weight"] = {
            "dtype": "BF16",
            "shape": [rows, cols],
            "data_offsets": [start, start + rows * cols * 2],
        }
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path = folder / "big.safetensors"
    with path.open("wb") as out:
        out.write(struct.pack("<Q", len(text)) + text)
        out.truncate(8 + len(text) + BIG_BYTES)
    return path


def post(client: httpx.Client, name: str, handle: object) -> httpx.Response:
    return client.post("/jobs", files={"model": (name, handle)}, data={"spec": json.dumps(SPEC)})


def test_a_2_gib_submission_and_hostile_views_stay_under_100_mib_of_api_memory(tmp_path: Path) -> None:
    port = free_port()
    limit = 3 * 1024**3  # the per-deployment cap, raised for checkpoints of this size
    env = stack_env(data_dir=tmp_path / "data", auth="disabled", reaper_interval_s=0, max_upload_bytes=limit)
    api = start_api(env, port, tmp_path / "api.log")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
            with write_model(tmp_path).open("rb") as handle:  # warm-up: imports torch, opens the database
                assert post(client, "small.safetensors", handle).status_code == 202
            big = big_checkpoint(tmp_path)
            assert big.stat().st_size > Settings.model_fields["max_upload_bytes"].default  # needs the raise
            assert big.stat().st_blocks * 512 < 1024**2  # sparse: the client wrote only the header
            before = reset_peak(api.pid)
            started = time.monotonic()
            with big.open("rb") as handle:
                response = post(client, big.name, handle)
            seconds = time.monotonic() - started
            assert response.status_code == 202, response.text
            big_growth = peak_mib(api.pid) - before
            job = client.get(f"/jobs/{response.json()['id']}").json()
            stored = tmp_path / "data" / "jobs" / job["id"] / "inputs" / "model.safetensors"

            before = reset_peak(api.pid)
            answers: list[int] = []

            def hostile() -> None:
                answers.append(post(client, "view.pth", stride_zero_view_pth()).status_code)

            threads = [threading.Thread(target=hostile) for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            hostile_growth = peak_mib(api.pid) - before
    finally:
        api.stop()
    print(
        f"API peak RSS growth: 2 GiB submit {big_growth:.1f} MiB in {seconds:.1f} s, "
        f"4 stride-0 views {hostile_growth:.1f} MiB"
    )
    assert job["state"] == "queued", job  # accepted, and left to a worker (none runs here)
    assert stored.stat().st_size == big.stat().st_size  # every byte arrived, on disk
    stored.unlink()  # 2 GiB of real blocks; pytest keeps recent tmp_paths
    assert big_growth < BOUND_MIB, big_growth
    assert answers == [415] * 4
    assert hostile_growth < BOUND_MIB, hostile_growth  # each would be +1 GiB if made contiguous
