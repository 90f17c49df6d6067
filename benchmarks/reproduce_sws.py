"""Reproduce seed 004's soft weight-sharing result (LeNet-300-100) and the SWS paper's LeNet-5 (162x).

Seed 004 (full MNIST; Ullrich, Meeds & Welling 2017's recipe): LeNet-300-100 98.2% accuracy before, 96.9%
after SWS at 98.0% sparsity. The SWS paper (Table 1, MNIST): LeNet-300-100 1.89% -> 1.94% error, 4.3% of
weights non-zero, 64x; LeNet-5-Caffe 0.88% -> 0.97% error, 0.5% non-zero, 162x.

Here, per data set (`mnist-5k`, `fashion-mnist`, optionally with the training split cut to `--train-limit`
for a reduced run) and architecture: a reference trained with the seeds' recipe (batch 16, SGD lr 0.005,
momentum 0.9, Nesterov, StepLR gamma 0.95 per epoch; cached), then a spec with `sws` through the normal
pipeline (`compress_file`: SWS retraining, merge, quantization, `.bin` encoding, decoded-artifact evaluation)
for every τ of `--taus`. τ is chosen on the validation split (error of the decoded, quantized model); only
the chosen run's test error is reported, with its sample count. The prior covers the weight tensors
(`fc*.weight` for LeNet-300-100, every `*.weight` for LeNet-5); biases are stored dense.

    PYTHONPATH=. python benchmarks/reproduce_sws.py [--archs lenet300 lenet5] [--data mnist-5k fashion-mnist]
        [--train-limit 2000] [--taus 5e-3 2e-2] [--sws '{"epochs": 15}']

"stored ratio" is the original fp32 state dict's bits over the whole `.bin` file (biases, header and
metadata included); "weights ratio" counts the weight tensors only (LC-style counting of positions, indices
and codebooks, see compression_core/metrics.py) and is the one to compare with the paper's 64x / 162x.

Measured earlier on the shared 2-core CPU, one torch thread, LeNet-300-100 on mnist-5k with all 4,000
training digits (reference: 20 epochs, 92.6% = 926/1000; before validation splits existed):

    settings (sws field)                       sparsity   accuracy after   values  stored / LC ratio  time
    defaults below (15 epochs, batch 64)       95.3%      91.8% (918/1000)  15      83.6x / 70.0x      158 s
    --sws '{"epochs": 20}'                     95.3%      92.2% (922/1000)  15      83.9x / 70.2x      336 s*
    (* before the faster prior, with the test suite running beside it)

Seed 004 reaches 98.0% at -1.3 points on full MNIST; here 95.3% at -0.8 / -0.4 points. On 4,000 digits the
reference is weaker (92.6% vs 98.2%) and the run is ~1,000 Adam steps (the authors' tutorial: ~7,000).
Settings that failed, measured at 15 epochs: components starting wide (σ = 0.25 · max|w|, the tutorial's
start) leave the zero component wide when training stops, so it takes 99.9% of the weights and the
quantized net is at chance (8.6%) although the retrained one is at 92-93%; tau 0.05 or 1e-3 with that start
did the same; no Gamma hyperprior on the non-zero components let them widen (σ ≈ 0.14), same failure.

On all 3,600 mnist-5k digits, 2 December 2026 (`--sws '{"epochs": 20}' --taus 1e-2 3e-2 --within 1.5`,
1,140 Adam steps per tau, docs/reproductions.md): LeNet-300-100 96.2% sparsity at 92.3% -> 90.3% (tau 1e-2;
3e-2: 98.6% at +5 points on validation); LeNet-5 with 8 epochs 98.5% at 95.9% -> 89.7%. Not met: one step
cost 0.44 s of a core with the prior over LeNet-300-100's 266,200 weights (3.3 ms without), so the long
schedule the method needs did not fit; the loss is in the quantization (retrained nets are within a point).
After the prior's kernel was fixed (3-4x faster), `--sws '{"epochs": 120}' --taus 1e-2 1.5e-2 2e-2 3e-2`
(1,281 s): tau 2e-2 chosen, 97.8% sparsity at 92.3% -> 90.2% (902/1000), 133x on the weights; not met,
narrowly (docs/reproductions.md).

A full run: no `--train-limit`, `--ref-epochs 20`, `--sws '{"epochs": 100}'` (the tutorial's ~7,000 Adam
steps are ~15 epochs of fashion-mnist's 54,000 images at batch 64... the paper ran far longer) and a τ grid of
3-5 values: hours per architecture on this CPU; minutes on a GPU.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers.bench_data import bench_data, cached_reference, describe  # noqa: E402

from compression_core.data import load_upload  # noqa: E402
from compression_core.evaluate import evaluate  # noqa: E402
from compression_core.format.reader import decode_state_dict  # noqa: E402
from compression_core.io import load_state_dict  # noqa: E402
from compression_core.job.pipeline import compress_file  # noqa: E402
from compression_core.models import build_model, load_into  # noqa: E402
from compression_core.spec import parse_spec  # noqa: E402

SEED = {  # arch: source, accuracy before %, accuracy after %, sparsity %, ratio
    "lenet300": ("seed 004 (MNIST 60k/10k)", 98.2, 96.9, 98.0, None),
    "lenet5": ("SWS paper (MNIST 60k/10k)", 99.12, 99.03, 99.5, 162.0),
}
SELECT = {"lenet300": "fc*.weight", "lenet5": "*.weight"}


def _acc(ev: dict) -> str:
    right = round(ev["top1"] * ev["samples"])
    return f"{100 * ev['top1']:.2f}% ({right}/{ev['samples']})"


Run = tuple[float, dict, float, float]  # tau, metrics, validation error of the decoded .bin, seconds


def run_tau(arch: str, ref: Path, data_path: Path, sws: dict, out: Path) -> tuple[dict, float, float]:
    """One SWS run through the pipeline; (metrics, validation error of the decoded .bin, seconds)."""
    spec = parse_spec(
        json.dumps(
            {"model": {"arch": arch}, "data": {"upload": True}, "sws": {**sws, "select": SELECT[arch]}}
        )
    )
    started = time.perf_counter()
    metrics = compress_file(ref, spec, out, data_path=data_path)
    took = time.perf_counter() - started
    splits = load_upload(data_path)
    assert splits.validation is not None
    model = load_into(build_model({"arch": arch}), decode_state_dict(out / "model.bin"))
    return metrics, evaluate(model, splits.validation, timing=False).error, took


def choose(runs: list[Run], ref_val_error: float, within: float | None) -> tuple[Run, str]:
    """The τ to report, on validation only: with `within` (points), the sparsest run whose decoded
    validation error is at most the reference's + `within` (the target's form); else, or when none
    qualifies, the lowest decoded validation error."""
    if within is not None:
        ok = [r for r in runs if r[2] <= ref_val_error + within / 100 + 1e-9]
        if ok:
            best = max(ok, key=lambda r: r[1]["sws"]["sparsity"])
            return best, f"sparsest within {within:g} points of the reference's validation error"
    rule = "lowest validation error" + ("" if within is None else f" (none within {within:g} points)")
    return min(runs, key=lambda r: r[2]), rule


def report(arch: str, data_name: str, runs: list[Run], ref_val_error: float, within: float | None) -> None:
    (tau, metrics, val_error, took), rule = choose(runs, ref_val_error, within)
    ev, s, totals = metrics["evaluation"], metrics["sws"], metrics["totals"]
    source, before, after, sparsity, ratio = SEED[arch]
    listing = ", ".join(
        f"{r[0]:g} ({100 * r[2]:.2f}% at {100 * r[1]['sws']['sparsity']:.1f}% sparsity, {r[3]:.0f} s)"
        for r in runs
    )
    print(
        f"\n== {arch} on {data_name}: tau {tau:g} chosen on validation ({rule}; reference "
        f"{100 * ref_val_error:.2f}%) among {listing} =="
    )
    print(f"{'':34}{source:>30}{'here (test split)':>30}")
    print(f"{'accuracy before':34}{before:>29.2f}%{_acc(ev['before']):>30}")
    last = s["history"][-1]
    retrained = f"{100 * (1 - last['validation_error']):.2f}% (validation)"
    print(f"{'accuracy retrained (not quantized)':34}{'-':>30}{retrained:>30}")
    print(f"{'accuracy after (decoded .bin)':34}{after:>29.2f}%{_acc(ev['after']):>30}")
    sp = f"{100 * s['sparsity']:.1f}% ({s['nonzero']}/{s['weights']} kept)"
    print(f"{'sparsity (weight tensors)':34}{sparsity:>29.1f}%{sp:>30}")
    merged = f"{s['components_learned']} / {s['components_after_merge']}"
    print(f"{'components (learned / merged)':34}{'17 / -':>30}{merged:>30}")
    print(f"{'stored ratio (.bin)':34}{'-':>30}{totals['ratio']:>29.1f}x")
    seed_ratio = "-" if ratio is None else f"{ratio:.0f}x"
    print(f"{'weights ratio (LC counting)':34}{seed_ratio:>30}{totals['lc_ratio']:>29.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--archs", nargs="+", default=["lenet300", "lenet5"], choices=sorted(SELECT))
    parser.add_argument("--data", nargs="+", default=["mnist-5k", "fashion-mnist"])
    parser.add_argument("--train-limit", type=int, default=0, help="first N training samples (0: all)")
    parser.add_argument("--ref-epochs", type=int, default=20)
    parser.add_argument("--taus", nargs="+", type=float, default=[5e-3], help="chosen among on validation")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a loaded CPU)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "mcs-reproduce")
    parser.add_argument(
        "--within",
        type=float,
        default=None,
        help="choose the sparsest tau within this many points of the reference's validation error",
    )
    parser.add_argument("--sws", type=json.loads, default={}, help="overrides of the sws field, as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.cache.mkdir(parents=True, exist_ok=True)
    total = time.perf_counter()
    for data_name in args.data:
        splits, data_path = bench_data(data_name, args.train_limit or None, args.cache)
        print(f"\ndata: {describe(splits)}")
        for arch in args.archs:
            ref = cached_reference(arch, splits, args.ref_epochs, args.cache)
            assert splits.validation is not None
            reference = load_into(build_model({"arch": arch}), load_state_dict(ref))
            ref_val_error = evaluate(reference, splits.validation, timing=False).error
            runs = []
            for tau in args.taus:
                sws = {**DEFAULT_SWS, **args.sws, "tau": tau}
                with tempfile.TemporaryDirectory() as out:
                    metrics, val_error, took = run_tau(arch, ref, data_path, sws, Path(out))
                runs.append((tau, metrics, val_error, took))
                print(
                    f"  tau {tau:g}: decoded validation error {100 * val_error:.2f}%, sparsity "
                    f"{100 * metrics['sws']['sparsity']:.1f}%, {took:.0f} s",
                    flush=True,
                )
            settings = {k: v for k, v in {**DEFAULT_SWS, **args.sws}.items() if k != "tau"}
            print(f"sws (tau from --taus): {json.dumps(settings)}")
            report(arch, data_name, runs, ref_val_error, args.within)
    print(f"\ntotal wall time {time.perf_counter() - total:.0f} s (shared, loaded 2-core CPU)")


DEFAULT_SWS = {  # the paper's settings, with log-precisions learned faster (fewer steps here)
    "components": 17,
    "pi_zero": 0.99,
    "tau": 5e-3,
    "epochs": 15,
    "batch_size": 64,
    "lr_log_precisions": 1e-2,
}

if __name__ == "__main__":
    main()
