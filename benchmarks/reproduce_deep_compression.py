"""Reproduce Deep Compression (Han et al. 2015) on LeNet-300-100 and LeNet-5 with the mnist-5k built-in.

For each network: train a reference with the seeds' recipe (batch 16, SGD lr 0.005, momentum 0.9,
Nesterov, StepLR gamma 0.95 per epoch), then run the spec
`compression_core/examples/deep-compression-<net>-retrain.json`
through the normal pipeline (`compress_file`): iterative magnitude pruning with retraining, k-means weight
sharing with centroid retraining, Huffman coding in the `.bin`. Prints the results beside the paper's:
LeNet-300-100 40x and LeNet-5 39x with no accuracy loss. The ratio is stored bits: the original fp32
state dict's bits over the whole `.bin` file's bits (header and metadata included).

    PYTHONPATH=. python benchmarks/reproduce_deep_compression.py [--nets lenet300 lenet5] [--threads 2]

Target: >= 40x (LeNet-300-100) and >= 39x (LeNet-5) with test error at most 0.5 points above the
reference. mnist-5k's test split has 1,000 samples, so one sample is 0.1 point.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compression_core.data import load_builtin  # noqa: E402
from compression_core.pipeline import compress_file  # noqa: E402
from compression_core.spec import load_spec  # noqa: E402
from compression_core.train import save_state_dict, train_reference  # noqa: E402
from compression_core.training.finetune import RetrainConfig  # noqa: E402

PAPER = {"lenet300": ("LeNet-300-100", 40.0, 1.64, 1.58), "lenet5": ("LeNet-5", 39.0, 0.80, 0.74)}
REFERENCE_EPOCHS = {"lenet300": 20, "lenet5": 8}
TARGET_POINTS = 0.5


def run(net: str, epochs: int, workdir: Path) -> dict:
    name, paper_ratio, paper_ref, paper_err = PAPER[net]
    data = load_builtin("mnist-5k")
    started = time.perf_counter()
    ref = train_reference({"arch": net}, data, RetrainConfig(epochs=epochs))
    train_s = time.perf_counter() - started
    model_path = save_state_dict(ref.model, workdir / f"{net}.safetensors")
    spec = load_spec(ROOT / "compression_core" / "examples" / f"deep-compression-{net}-retrain.json")
    started = time.perf_counter()
    metrics = compress_file(model_path, spec, workdir / net)
    compress_s = time.perf_counter() - started
    before, after = metrics["evaluation"]["before"], metrics["evaluation"]["after"]
    totals = metrics["totals"]
    print(f"\n== {name} on mnist-5k (train {data.sizes['train']}, test {data.sizes['test']}) ==")
    print(f"reference: {epochs} epochs in {train_s:.0f} s; compression with retraining in {compress_s:.0f} s")
    print(f"{'':24}{'this run':>22}{'paper (full MNIST)':>22}")
    print(f"{'reference error':24}{_err(before):>22}{paper_ref:>21.2f}%")
    print(f"{'compressed error':24}{_err(after):>22}{paper_err:>21.2f}%")
    print(f"{'compression ratio':24}{totals['ratio']:>21.1f}x{paper_ratio:>21.0f}x")
    print(f"{'.bin size':24}{totals['bin_bits'] / 8 / 1024:>19.1f} KiB{'':>22}")
    header = f"{'layer':14}{'params':>9}{'kept':>8}{'kept %':>8}{'k':>6}{'bits':>10}{'bits/weight':>12}"
    print(f"\n{header}{'bits/kept':>10}")
    for e in metrics["tensors"]:
        coded = e["bits"]["coded"]
        print(
            f"{e['name']:14}{e['params']:>9}{e['kept']:>8}{100 * e['kept'] / e['params']:>7.1f}%"
            f"{e['codebook_size'] or '-':>6}{coded:>10}{coded / e['params']:>12.2f}"
            f"{coded / max(e['kept'], 1):>10.2f}"
        )
    delta = 100 * (after["error"] - before["error"])
    ok = totals["ratio"] >= paper_ratio and delta <= TARGET_POINTS
    print(
        f"\nerror change {delta:+.1f} points; target >= {paper_ratio:.0f}x and <= +{TARGET_POINTS} points: "
        f"{'MET' if ok else 'NOT MET'}"
    )
    return {
        "net": net,
        "ratio": totals["ratio"],
        "reference_error": before["error"],
        "error": after["error"],
        "samples": after["samples"],
        "met": ok,
        "train_s": train_s,
        "compress_s": compress_s,
    }


def _err(ev: dict) -> str:
    wrong = round(ev["error"] * ev["samples"])
    return f"{100 * ev['error']:.2f}% ({wrong}/{ev['samples']})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", default=["lenet300", "lenet5"], choices=sorted(PAPER))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for net in args.nets:
            results.append(run(net, REFERENCE_EPOCHS[net], Path(tmp)))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0 if all(r["met"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
