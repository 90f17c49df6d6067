"""The API's memory per submission is O(header) (issue 10 item 1, issue 14): it never loads an upload's
tensors. Measured on a real API process (`mcs serve --no-worker` under uvicorn) from the kernel's own
peak-RSS accounting, reset just before the submissions."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import torch
from svc_helpers import SPEC, write_model

from .hostile import stride_zero_view_pth
from .memory import peak_mib, reset_peak
from .stack import free_port, stack_env, start_api

BIG_MIB = 300
BOUND_MIB = 100  # generous: a loaded 2-core machine, allocator noise, python-multipart buffers


def big_checkpoint(folder: Path) -> Path:
    """A 300 MiB torch zip of six 50 MiB float32 matrices, generated here."""
    path = folder / "big.pth"
    rows = 50 * 1024**2 // 4 // 1024
    torch.save({f"layer{i}.weight": torch.ones(rows, 1024) for i in range(BIG_MIB // 50)}, path)
    return path


def post(client: httpx.Client, name: str, handle: object) -> httpx.Response:
    return client.post("/jobs", files={"model": (name, handle)}, data={"spec": json.dumps(SPEC)})


def test_a_300_mib_submission_and_hostile_views_stay_under_100_mib_of_api_memory(tmp_path: Path) -> None:
    port = free_port()
    env = stack_env(data_dir=tmp_path / "data", auth="disabled", reaper_interval_s=0)
    api = start_api(env, port, tmp_path / "api.log")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as client:
            with write_model(tmp_path).open("rb") as handle:  # warm-up: imports torch, opens the database
                assert post(client, "small.safetensors", handle).status_code == 202
            big = big_checkpoint(tmp_path)
            assert big.stat().st_size > BIG_MIB * 1024**2
            before = reset_peak(api.pid)
            with big.open("rb") as handle:
                response = post(client, big.name, handle)
            assert response.status_code == 202, response.text
            big_growth = peak_mib(api.pid) - before

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
        f"API peak RSS growth: 300 MiB submit {big_growth:.1f} MiB, 4 stride-0 views {hostile_growth:.1f} MiB"
    )
    assert big_growth < BOUND_MIB, big_growth
    assert answers == [415] * 4
    assert hostile_growth < BOUND_MIB, hostile_growth  # each would be +1 GiB if made contiguous
