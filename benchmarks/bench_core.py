"""Benchmark of the data-free pipeline on ResNet-50 and of the 1-D k-means against scikit-learn.

Run from the repository root:  PYTHONPATH=. python benchmarks/bench_core.py [--quick | --smoke]
(--quick: a 200,000-weight k-means sample; --smoke: SqueezeNet 1.1 and 20,000 weights, only to check it runs)

1. torchvision resnet50(weights=None) (25.6M parameters): prune 90% per layer + k=16 codebook + Huffman,
   through `compress_file`, printing each stage's time (load, prune, kmeans, encode, decode, write).
2. Our `kmeans1d` against scikit-learn's `KMeans(n_init=1)` (Lloyd, same initial centers given as an array,
   and each with its own k-means++) on the same weights: one big layer's kept weights and a 1M subsample
   of all conv weights. Time and within-cluster SSE side by side, with ratios, and a last "summary" line
   with the range of the time ratios and of the SSE ratios (the two are not at equal SSE: each stops after
   the same number of Lloyd iterations or at convergence; the SSE ratio says how far apart they ended).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from compression_core.io import save_state_dict
from compression_core.job.pipeline import compress_file
from compression_core.methods.prune.apply import keep_positions
from compression_core.methods.quantize.kmeans1d import _initial_centers, kmeans1d
from compression_core.spec import example_spec

RATIOS: list[tuple[float, float]] = []  # (sklearn time / ours, sklearn SSE / ours) of every comparison


def torchvision_state_dict(name: str = "resnet50") -> dict[str, torch.Tensor]:
    import torchvision.models

    torch.manual_seed(0)
    return dict(getattr(torchvision.models, name)(weights=None).state_dict())


def bench_pipeline(state_dict: dict[str, torch.Tensor], label: str = "ResNet-50") -> None:
    params = sum(t.numel() for t in state_dict.values())
    print(f"\n== {label} ({params / 1e6:.1f}M entries): prune 90% per layer + k=16 + Huffman ==")
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "resnet50.pth"
        save_state_dict(state_dict, model)
        started = time.perf_counter()
        metrics = compress_file(model, example_spec("resnet-prune90-k16"), Path(tmp) / "out")
        wall = time.perf_counter() - started
    timing = metrics["timing"]
    step = timing["seconds"]
    # data-free jobs stream (compression_core/streaming): each tensor is read, compressed, encoded and
    # written in turn, so "the rest of compress" holds reading, coding and writing too
    stages = {
        "global κ pass": timing.get("global_kappa", 0.0),
        "prune": step.get("prune", 0.0),
        "kmeans": step.get("quantize", 0.0),
        "read+code+write, metrics": timing["compress"] - step.get("prune", 0.0) - step.get("quantize", 0.0),
    }
    for name, seconds in stages.items():
        print(f"  {name:<26} {seconds:7.2f} s")
    print(f"  {'total (wall)':<26} {wall:7.2f} s   on {torch.get_num_threads()} torch threads")
    totals, files = metrics["totals"], metrics["files"]
    pth_mb, bin_mb = files["model_pth_bytes"] / 1e6, files["model_bin_bytes"] / 1e6
    print(f"  model.pth {pth_mb:.1f} MB, model.bin {bin_mb:.2f} MB, ratio {totals['ratio']:.1f}x")
    bpw, lc = totals["bits_per_weight"], totals["lc_ratio"]
    print(f"  {bpw:.3f} bits/weight (whole file), LC-style ratio {lc:.1f}x")


def _sklearn_sse(x: np.ndarray, centers: np.ndarray) -> float:
    c = np.sort(centers.reshape(-1).astype(np.float32))
    bounds = (c[:-1].astype(np.float64) + c[1:]) / 2
    idx = np.searchsorted(bounds, x.astype(np.float64), side="right")
    return float(((x.astype(np.float64) - c[idx].astype(np.float64)) ** 2).sum())


def compare_kmeans(label: str, x: np.ndarray, k: int, iters: int) -> None:
    from sklearn.cluster import KMeans

    print(f"\n-- {label}: n={x.size:,}, k={k}, at most {iters} Lloyd iterations --")
    print(f"  {'method':<38} {'time s':>8} {'SSE':>14} {'time ratio':>11} {'SSE ratio':>10}")
    xs = np.sort(x).astype(np.float64)
    for init in ("linear", "density", "kmeans++"):
        started = time.perf_counter()
        ours = kmeans1d(x, k, init=init, iters=iters, seed=0)
        ours_s = time.perf_counter() - started
        if init == "kmeans++":
            sk = KMeans(
                k, init="k-means++", n_init=1, max_iter=iters, tol=0.0, random_state=0, algorithm="lloyd"
            )
        else:
            start = _initial_centers(xs, k, init, np.random.default_rng(0)).reshape(-1, 1)
            sk = KMeans(k, init=start, n_init=1, max_iter=iters, tol=0.0, algorithm="lloyd")
        started = time.perf_counter()
        sk.fit(x.reshape(-1, 1))
        sk_s = time.perf_counter() - started
        sk_sse = _sklearn_sse(x, sk.cluster_centers_)
        RATIOS.append((sk_s / max(ours_s, 1e-9), sk_sse / max(ours.sse, 1e-30)))
        print(f"  {'kmeans1d ' + init:<38} {ours_s:8.3f} {ours.sse:14.6g} {'':>11} {'':>10}")
        print(
            f"  {'sklearn KMeans ' + init + ' (n_init=1)':<38} {sk_s:8.3f} {sk_sse:14.6g} "
            f"{sk_s / max(ours_s, 1e-9):10.1f}x {sk_sse / max(ours.sse, 1e-30):10.4f}"
        )


def bench_kmeans(state_dict: dict[str, torch.Tensor], size: int, iters: int) -> None:
    print("\n== 1-D k-means vs scikit-learn (time ratio = sklearn / ours; SSE ratio = sklearn / ours) ==")
    biggest = max((n for n, t in state_dict.items() if t.ndim == 4), key=lambda n: state_dict[n].numel())
    w = state_dict[biggest]
    kept = w.reshape(-1)[keep_positions(w, w.numel() // 10)].numpy().astype(np.float32)
    compare_kmeans(f"kept 10% of {biggest} {tuple(w.shape)}", kept, 16, 300)
    conv = torch.cat([t.reshape(-1) for t in state_dict.values() if t.ndim == 4]).numpy()
    rng = np.random.default_rng(0)
    sample = conv[rng.choice(conv.size, size, replace=False)].astype(np.float32)
    compare_kmeans(f"{size:,} random conv weights", sample, 16, iters)
    times, sses = [t for t, _ in RATIOS], [e for _, e in RATIOS]
    print(
        f"\nsummary: kmeans1d is {min(times):.0f}-{max(times):.0f}x faster than scikit-learn's KMeans over "
        f"{len(RATIOS)} comparisons; scikit-learn's within-cluster SSE is "
        f"{min(sses):.3f}-{max(sses):.3f}x ours (>1: ours is lower)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller k-means sample")
    parser.add_argument("--smoke", action="store_true", help="smallest size: SqueezeNet 1.1, 20,000 weights")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads")
    started = time.perf_counter()
    name = "squeezenet1_1" if args.smoke else "resnet50"
    state_dict = torchvision_state_dict(name)
    print(f"built {name} state dict in {time.perf_counter() - started:.1f} s")
    bench_pipeline(state_dict, "SqueezeNet 1.1" if args.smoke else "ResNet-50")
    if args.smoke:
        bench_kmeans(state_dict, 20_000, 20)
    else:
        bench_kmeans(state_dict, 200_000 if args.quick else 1_000_000, 100 if args.quick else 300)


if __name__ == "__main__":
    main()
