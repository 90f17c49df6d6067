"""Runs the benchmarks one after another, each as its own process, and prints how each ended.

    python benchmarks/run_all.py            # the quick set (`make bench`): a few minutes on 2 cores
    python benchmarks/run_all.py --all      # also the seed reproductions and the load test (much longer)
    python benchmarks/run_all.py --only bench_core --only bench_coding
    python benchmarks/run_all.py --list
    python benchmarks/run_all.py --all --smoke   # every one at its smallest size: does each still run?

Each benchmark prints its own numbers beside its named baseline; this script adds nothing to them, it only
sets PYTHONPATH to the repository root, runs them in order, and exits non-zero if any failed. `--smoke`
runs each with its `smoke` arguments (its smallest size: the numbers mean nothing, only that the script
still runs end to end); tests/benchmarks/test_smoke.py does the same for every benchmark in the suite.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Benchmark:
    script: str  # a file in benchmarks/
    args: tuple[str, ...]
    quick: bool  # in the default set
    what: str
    smoke: tuple[str, ...] = ()  # the arguments of its smallest run (`--smoke`)

    @property
    def name(self) -> str:
        return Path(self.script).stem

    @property
    def path(self) -> Path:
        return ROOT / "benchmarks" / self.script


BENCHMARKS = (
    Benchmark(
        "bench_llm_quant.py",
        ("--hidden", "512", "--layers", "4"),
        False,
        "int4 g128 RTN/GPTQ of a Hugging Face LM vs compressed-tensors' RTN, llm-compressor's GPTQ",
        ("--smoke",),
    ),
    Benchmark(
        "bench_core.py",
        ("--quick",),
        True,
        "ResNet-50 data-free pipeline; 1-D k-means vs scikit-learn",
        ("--smoke",),
    ),
    Benchmark(
        "bench_coding.py",
        ("--quick",),
        True,
        "Huffman vs dahuffman, zstd and fixed-width packing",
        ("--smoke",),
    ),
    Benchmark(
        "bench_service.py",
        ("--jobs", "5", "--seconds", "3"),
        True,
        "service overhead vs bare calls",
        ("--jobs", "2", "--seconds", "1", "--clients", "1"),
    ),
    Benchmark(
        "reproduce_deep_compression.py",
        (),
        False,
        "Deep Compression on both LeNets (mnist-5k)",
        ("--smoke",),
    ),
    Benchmark(
        "bench_train_loop.py",
        ("--samples", "1000", "--repeats", "3"),
        True,
        "training loop vs a bare PyTorch loop",
        ("--samples", "200", "--repeats", "1"),
    ),
    Benchmark(
        "bench_sws_prior.py",
        ("--repeats", "5"),
        True,
        "SWS prior step vs PyTorch autograd logsumexp",
        ("--weights", "10000", "--repeats", "1"),
    ),
    Benchmark(
        "reproduce_lc.py",
        (),
        False,
        "seed 001: the LC algorithm on LeNet-5, shortened schedule",
        # the seed's lr 0.2 diverges on a 1-epoch reference; 0.02 is stable there
        ("--mixes", "b", "--steps", "1", "--epochs", "1", "--reference-epochs", "1", "--lr", "0.02"),
    ),
    Benchmark(
        "lc_toolkit_side_by_side.py",
        (),
        False,
        "seed 001: the LC toolkit's LC algorithm beside ours (smoke schedule; needs a checkout)",
        ("--impl", "ours", "--mixes", "b", "--steps", "1", "--epochs", "1", "--train-limit", "300")
        + ("--reference-epochs", "1"),  # ours alone: CI has no toolkit checkout
    ),
    Benchmark(
        "reproduce_sws.py",
        (),
        False,
        "seed 004 / SWS paper: soft weight-sharing on both LeNets",
        ("--archs", "lenet300", "--data", "mnist-5k", "--train-limit", "300", "--ref-epochs", "1")
        + ("--sws", '{"epochs": 1}'),
    ),
    Benchmark(
        "reproduce_students.py",
        (),
        False,
        "seeds 002/004: Fire-module students, KD table",
        ("--data", "mnist-5k", "--families", "lenet", "--epochs", "1", "--train-limit", "300")
        + ("--grid", "2:0.5"),
    ),
    Benchmark(
        "bench_load.py",
        ("--clients", "8", "--seconds", "10"),
        False,
        "bounded load test, loopback",
        ("--clients", "2", "--seconds", "2", "--workers", "1", "--max-jobs", "4"),
    ),
    Benchmark(
        "bench_search.py",
        (),
        False,
        "search jobs: 12-point sweep on 1 vs 2 workers; budget vs grid",
        ("--smoke",),
    ),
    Benchmark(
        "bench_onnx_coverage.py",
        (),
        False,
        "ONNX uploads: torchvision classifiers checked, converted, compressed, pruned (vs onnx2torch alone)",
        ("--smallest", "1", "--size", "64"),
    ),
    Benchmark(
        "bench_deploy.py",
        (),
        False,
        "seed 003's table: Torch-Pruning, ONNX, int8, latency vs original",
        ("--only", "lenet5", "--epochs", "1", "--runs", "2"),
    ),
    Benchmark(
        "bench_streaming.py",
        ("--sizes", "0.1,0.5", "--models", "resnet50"),
        False,
        "streaming data-free: peak RSS and time vs model size, 1 vs 2 workers, vs in-memory",
        ("--sizes", "0.01", "--models", "", "--workers", "1", "--baseline-up-to", "0.01"),
    ),
    Benchmark(
        "bench_bf16_shards.py",
        (),
        False,
        "issue 20: 4-shard bf16 checkpoint, prune 50% + k=16 via mcs compress: peak RSS beside its bound",
        ("--scale", "0.02"),
    ),
    Benchmark(
        "bench_nm_prune.py",
        (),
        True,
        "2:4 pruning mask on 4096x4096 and 11008x4096 weights vs torch.ao's WeightNormSparsifier",
        ("--smoke",),
    ),
)


def selected(run_all: bool, only: list[str]) -> list[Benchmark]:
    known = {b.name: b for b in BENCHMARKS}
    unknown = [name for name in only if name not in known]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(known)}")
    if only:
        return [known[name] for name in only]
    return [b for b in BENCHMARKS if run_all or b.quick]


def run(benchmark: Benchmark, smoke: bool = False) -> tuple[int, float]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    print(f"\n=== {benchmark.name}: {benchmark.what}", flush=True)
    started = time.perf_counter()
    args = benchmark.smoke if smoke else benchmark.args
    code = subprocess.call([sys.executable, str(benchmark.path), *args], cwd=ROOT, env=env)
    return code, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--all", action="store_true", help="also the long reproductions and the load test")
    parser.add_argument("--only", action="append", default=[], metavar="NAME", help="run just this one")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--smoke", action="store_true", help="each at its smallest size (does it still run?)")
    args = parser.parse_args(argv)
    if args.list:
        for b in BENCHMARKS:
            print(f"{b.name:<30} {'quick' if b.quick else '--all':<6} {b.what}")
        return 0
    outcomes = [(b, *run(b, args.smoke)) for b in selected(args.all, args.only)]
    print("\n=== summary (wall times on this machine, inflated when it is shared)")
    for b, code, seconds in outcomes:
        print(f"{b.name:<30} {'ok' if code == 0 else f'FAILED ({code})':<12} {seconds:7.1f} s")
    return 0 if all(code == 0 for _, code, _ in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
