"""Bounded load test on loopback: many clients submit small jobs and poll them for a fixed time against
the real stack (a private redis-server, the API under uvicorn, Celery workers, SQLite or PostgreSQL).

Reports jobs submitted / completed / failed / lost (a job is lost if it has not reached a final state
when the drain time is over) and p50/p99 latencies of submissions and of status polls, next to the same
numbers for GET /healthz (the baseline: a route that touches neither the database nor the broker).

    PYTHONPATH=. python benchmarks/bench_load.py --clients 16 --seconds 20 --workers 2

Loopback only, bounded by --seconds, --max-jobs and --drain-seconds.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch
from safetensors.torch import save

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "reliability"))

from stack import RedisServer, free_port, stack_env, start_api, start_worker  # noqa: E402

SPEC = {
    "version": 1,
    "rules": [
        {
            "select": {"name": "*.weight"},
            "steps": [{"type": "prune", "sparsity": 0.8}, {"type": "quantize", "k": 8}],
        }
    ],
}
FINAL = ("succeeded", "failed", "cancelled")


def tiny_model(seed: int) -> bytes:
    generator = torch.Generator().manual_seed(seed)
    return save(
        {
            "fc.weight": torch.randn(32, 32, generator=generator),
            "fc.bias": torch.randn(32, generator=generator),
        }
    )


class Client(threading.Thread):
    """Submit, poll until final, repeat, until the deadline; record every latency."""

    def __init__(
        self, base: str, token: str, deadline: float, budget: threading.Semaphore, seed: int
    ) -> None:
        super().__init__(daemon=True)
        self.http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        self.deadline, self.budget, self.seed = deadline, budget, seed
        self.submit_s: list[float] = []
        self.poll_s: list[float] = []
        self.health_s: list[float] = []
        self.jobs: list[str] = []
        self.errors: list[str] = []

    def timed(self, samples: list[float], method: str, url: str, **kwargs: Any) -> httpx.Response:
        clock = time.perf_counter()
        response = self.http.request(method, url, **kwargs)
        samples.append(time.perf_counter() - clock)
        return response

    def run(self) -> None:
        model = tiny_model(self.seed)
        while time.monotonic() < self.deadline and self.budget.acquire(blocking=False):
            try:
                response = self.timed(
                    self.submit_s,
                    "POST",
                    "/jobs",
                    files={"model": ("m.safetensors", io.BytesIO(model))},
                    data={"spec": json.dumps(SPEC)},
                    headers={"Idempotency-Key": uuid.uuid4().hex},
                )
                if response.status_code != 202:
                    self.errors.append(f"submit {response.status_code}: {response.text[:200]}")
                    continue
                job_id = response.json()["id"]
                self.jobs.append(job_id)
                while time.monotonic() < self.deadline:
                    self.timed(self.health_s, "GET", "/healthz")
                    state = self.timed(self.poll_s, "GET", f"/jobs/{job_id}").json()["state"]
                    if state in FINAL:
                        break
                    time.sleep(0.05)
            except httpx.HTTPError as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")


def percentiles(samples: list[float]) -> str:
    if not samples:
        return "n/a"
    p50, p99 = np.percentile(np.array(samples) * 1000, [50, 99])
    return f"p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  (n={len(samples)})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0, help="submitting and polling time")
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes")
    parser.add_argument("--max-jobs", type=int, default=2000, help="cap on submissions")
    parser.add_argument("--drain-seconds", type=float, default=60.0, help="time for queued jobs to finish")
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temp dir")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mcs-load-") as tmp_name:
        tmp = Path(tmp_name)
        redis_server = RedisServer(tmp / "redis")
        redis_server.start()
        data_dir, port = tmp / "data", free_port()
        database = args.database_url or f"sqlite:///{data_dir / 'mcs.db'}"
        env = stack_env(data_dir=data_dir, database_url=database, broker_url=redis_server.url, auth="enabled")
        processes = []
        try:
            from mcs_common.db import init_db, make_engine, make_session_factory
            from service.auth import create_token

            data_dir.mkdir(parents=True)
            engine = make_engine(database)
            init_db(engine)
            with make_session_factory(engine)() as session:
                tokens = [
                    create_token(session, f"load-{i}-{uuid.uuid4().hex[:6]}")[1] for i in range(args.clients)
                ]
                admin = create_token(session, f"load-admin-{uuid.uuid4().hex[:6]}", admin=True)[1]
            engine.dispose()
            processes.append(start_api(env, port, tmp / "api.log"))
            processes += [start_worker(env, tmp / f"worker{i}.log") for i in range(args.workers)]
            base = f"http://127.0.0.1:{port}"
            budget = threading.Semaphore(args.max_jobs)
            started = time.monotonic()
            clients = [
                Client(base, tokens[i], started + args.seconds, budget, i) for i in range(args.clients)
            ]
            for client in clients:
                client.start()
            for client in clients:
                client.join(args.seconds + 120)
            elapsed = time.monotonic() - started
            submitted = [job for client in clients for job in client.jobs]
            states = drain(base, admin, submitted, args.drain_seconds)
        finally:
            for process in reversed(processes):
                process.stop()
            redis_server.kill()

    counts = {state: sum(1 for s in states.values() if s == state) for state in (*FINAL, "queued", "running")}
    lost = len(submitted) - counts["succeeded"] - counts["failed"] - counts["cancelled"]
    errors = [e for client in clients for e in client.errors]
    print(
        f"load: {args.clients} clients, {args.workers} workers, "
        f"{args.seconds:.0f} s of load ({elapsed:.1f} s)"
    )
    print(
        f"  jobs submitted {len(submitted)}, completed {counts['succeeded']}, failed {counts['failed']}, "
        f"lost {lost} (still queued {counts['queued']}, running {counts['running']} after the drain); "
        f"throughput {counts['succeeded'] / max(elapsed, 1e-9):.1f} jobs/s"
    )
    print(f"  POST /jobs     {percentiles([s for c in clients for s in c.submit_s])}")
    print(f"  GET /jobs/{{id}} {percentiles([s for c in clients for s in c.poll_s])}")
    print(f"  GET /healthz   {percentiles([s for c in clients for s in c.health_s])}   (baseline)")
    polls = [s for c in clients for s in c.poll_s]
    health = [s for c in clients for s in c.health_s]
    if polls and health:
        print(f"  status poll p50 / healthz p50: {np.median(polls) / np.median(health):.2f}x")
    if errors:
        print(f"  client errors: {len(errors)}; first: {errors[0]}")


def drain(base: str, admin: str, submitted: list[str], seconds: float) -> dict[str, str]:
    """The state of every submitted job once all are final, or when the drain time is over."""
    states: dict[str, str] = {}
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {admin}"}, timeout=60) as http:
        pending = list(submitted)
        while pending and time.monotonic() < deadline:
            for job_id in list(pending):
                state = http.get(f"/jobs/{job_id}").json()["state"]
                states[job_id] = state
                if state in FINAL:
                    pending.remove(job_id)
            if pending:
                time.sleep(0.5)
    return states


if __name__ == "__main__":
    main()
