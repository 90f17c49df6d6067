"""Service overhead, measured against baselines in the same run.

1. Job latency: submit -> succeeded for a tiny model through the real service (API + worker + broker +
   database), against (a) `compress_file` called directly on the same input and (b) a bare FastAPI endpoint
   that receives the same multipart upload and answers at once.
2. Read rate: GET /jobs/{id} requests per second that one API process serves, against a bare FastAPI
   endpoint returning a JSON document of the same size, both under uvicorn on loopback, same client load.
3. Cancellation: POST /jobs/{id}/cancel on a running job (200 tensors, k-means per tensor) -> state
   "cancelled", against the worker's cancel poll interval (MCS_CANCEL_POLL_S) and the time one tensor takes.
   (tests/service/test_service_e2e.py checks that a cancelled job stops; how fast is measured here.)

Run: PYTHONPATH=. python benchmarks/bench_service.py [--jobs 10] [--seconds 5] [--clients 4] [--redis URL]
Without --redis the service runs embedded (`mcs serve`: SQLite + filesystem broker + a worker child);
with --redis it runs `mcs serve --no-worker` and `mcs worker` over Redis (and SQLite).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI, Request

ROOT = Path(__file__).resolve().parent.parent
SPEC = {
    "version": 1,
    "rules": [{"select": {"name": "*.weight"}, "steps": [{"type": "prune", "sparsity": 0.8}]}],
}

_DOCUMENT: dict[str, object] = {}
CANCEL_POLL_S = 0.25


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    _DOCUMENT.update(json.loads(os.environ.get("BENCH_DOCUMENT", "{}")))
    yield


bare_app = FastAPI(lifespan=_lifespan)


@bare_app.post("/upload")
async def bare_upload(request: Request) -> dict[str, int]:
    """Baseline: read the multipart body (Starlette's parser) and answer."""
    form = await request.form()
    return {"fields": len(form)}


@bare_app.get("/doc")
def bare_document() -> dict[str, object]:
    """Baseline: a constant JSON document (set to a job document's size at startup)."""
    return _DOCUMENT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(url)


@contextmanager
def process(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def make_model(folder: Path) -> Path:
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(0)
    state = {"fc1.weight": torch.randn(64, 64, generator=generator), "fc1.bias": torch.zeros(64)}
    path = folder / "tiny.safetensors"
    save_file(state, str(path))
    return path


def job_latencies(base: str, model: Path, runs: int) -> tuple[list[float], dict[str, object]]:
    times, job = [], {}
    with httpx.Client(base_url=base, timeout=60) as client:
        for _ in range(runs + 1):  # the first run warms imports and is dropped
            start = time.perf_counter()
            response = client.post(
                "/jobs", files={"model": (model.name, model.read_bytes())}, data={"spec": json.dumps(SPEC)}
            )
            location = response.headers["Location"]
            deadline = time.monotonic() + 300
            while (job := client.get(location).json())["state"] not in ("succeeded", "failed", "cancelled"):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"job still {job['state']} after 300 s: {job}")
                time.sleep(0.005)
            assert job["state"] == "succeeded", job
            times.append(time.perf_counter() - start)
    return times[1:], job


def make_slow_model(folder: Path, tensors: int = 200) -> Path:
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(1)
    state = {f"layer{i}.weight": torch.randn(128, 128, generator=generator) for i in range(tensors)}
    path = folder / "slow.safetensors"
    save_file(state, str(path))
    return path


SLOW_SPEC = {
    "version": 1,
    "rules": [
        {"select": {"name": "*"}, "steps": [{"type": "quantize", "k": 64, "iters": 300, "init": "linear"}]}
    ],
}


def cancel_latencies(base: str, model: Path, runs: int) -> list[float]:
    """Seconds from the cancel request's answer to the job's "cancelled" state, once it is running."""
    times = []
    with httpx.Client(base_url=base, timeout=60) as client:
        for _ in range(runs):
            response = client.post(
                "/jobs",
                files={"model": (model.name, model.read_bytes())},
                data={"spec": json.dumps(SLOW_SPEC)},
            )
            location = response.headers["Location"]
            deadline = time.monotonic() + 300
            while (job := client.get(location).json())["progress"]["fraction"] < 0.06:
                if job["state"] not in ("queued", "running") or time.monotonic() > deadline:
                    raise RuntimeError(f"the slow job did not run as expected: {job}")
                time.sleep(0.01)
            client.post(f"{location}/cancel").raise_for_status()
            start = time.perf_counter()
            while (job := client.get(location).json())["state"] != "cancelled":
                if job["state"] in ("succeeded", "failed") or time.monotonic() > deadline:
                    raise RuntimeError(f"the job was not cancelled: {job}")
                time.sleep(0.005)
            times.append(time.perf_counter() - start)
    return times


def upload_latencies(base: str, model: Path, runs: int) -> list[float]:
    times = []
    with httpx.Client(base_url=base, timeout=60) as client:
        for _ in range(runs + 1):
            start = time.perf_counter()
            client.post(
                "/upload", files={"model": (model.name, model.read_bytes())}, data={"spec": json.dumps(SPEC)}
            ).raise_for_status()
            times.append(time.perf_counter() - start)
    return times[1:]


def library_latencies(model: Path, runs: int, folder: Path) -> list[float]:
    from compression_core.job.pipeline import compress_file
    from compression_core.spec import Spec

    spec, times = Spec.model_validate(SPEC), []
    for i in range(runs + 1):
        start = time.perf_counter()
        compress_file(model, spec, folder / f"lib{i}")
        times.append(time.perf_counter() - start)
    return times[1:]


async def request_rate(url: str, seconds: float, clients: int) -> float:
    count = 0
    deadline = time.perf_counter() + seconds

    async def one(client: httpx.AsyncClient) -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            (await client.get(url)).raise_for_status()
            count += 1

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        await client.get(url)
        start = time.perf_counter()
        await asyncio.gather(*(one(client) for _ in range(clients)))
        return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--redis", default=None, help="run over this Redis URL instead of embedded")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = make_model(folder)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MCS_")}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        env["MCS_DATA_DIR"] = str(folder / "data")
        env["MCS_PROGRESS_INTERVAL_S"] = "0.5"
        env["MCS_CANCEL_POLL_S"] = str(CANCEL_POLL_S)
        mode = "embedded (SQLite, filesystem broker, worker child)"
        serve = [sys.executable, "-m", "mcs", "serve", "--port", str(port := free_port())]
        worker: list[str] | None = None
        if args.redis:
            env["MCS_BROKER_URL"] = args.redis
            env["MCS_QUEUE_CPU"] = f"bench-{os.getpid()}"
            serve.append("--no-worker")
            worker = [sys.executable, "-m", "mcs", "worker", "--queues", "cpu"]
            mode = f"Redis broker ({args.redis}), SQLite, one `mcs worker`"
        base = f"http://127.0.0.1:{port}"
        bare_port = free_port()
        with (
            process(serve, env, folder / "serve.log"),
            process(worker, env, folder / "worker.log") if worker else _nothing(),
        ):
            wait_ready(f"{base}/readyz")
            jobs, job = job_latencies(base, model, args.jobs)
            cancels = cancel_latencies(base, make_slow_model(folder), max(1, args.jobs // 2))
            get_rate = asyncio.run(request_rate(f"{base}/jobs/{job['id']}", args.seconds, args.clients))
        bare_env = dict(env, BENCH_DOCUMENT=json.dumps(job))
        bare = [
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(ROOT / "benchmarks"),
            "bench_service:bare_app",
        ]
        bare += ["--port", str(bare_port), "--log-level", "warning"]
        with process(bare, bare_env, folder / "bare.log"):
            wait_ready(f"http://127.0.0.1:{bare_port}/doc")
            uploads = upload_latencies(f"http://127.0.0.1:{bare_port}", model, args.jobs)
            bare_rate = asyncio.run(
                request_rate(f"http://127.0.0.1:{bare_port}/doc", args.seconds, args.clients)
            )
        library = library_latencies(model, args.jobs, folder)

    job_ms, upload_ms, lib_ms = (1000 * statistics.median(t) for t in (jobs, uploads, library))
    print(f"mode: {mode}; {os.cpu_count()} CPUs; tiny model {model.name} (4,160 parameters)")
    print(f"job submit->succeeded, median of {args.jobs}: {job_ms:8.1f} ms")
    print(f"  baseline compress_file in-process:     {lib_ms:8.1f} ms   ratio {job_ms / lib_ms:6.1f}x")
    print(f"  baseline bare FastAPI upload endpoint: {upload_ms:8.1f} ms   ratio {job_ms / upload_ms:6.1f}x")
    print(f"  service overhead (job - library):      {job_ms - lib_ms:8.1f} ms")
    print(
        f"GET /jobs/{{id}} ({len(json.dumps(job))} B), {args.clients} clients, {args.seconds:.0f} s: "
        f"{get_rate:8.0f} req/s"
    )
    print(
        f"  baseline bare FastAPI GET, same JSON:  {bare_rate:8.0f} req/s   "
        f"ratio {get_rate / bare_rate:6.2f}x"
    )
    print(
        f"cancel -> cancelled on a running job, median of {len(cancels)}: "
        f"{1000 * statistics.median(cancels):8.1f} ms (max {1000 * max(cancels):.1f} ms)"
    )
    print(f"  baseline: the worker polls for cancellation every {CANCEL_POLL_S * 1000:.0f} ms")


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


if __name__ == "__main__":
    main()
