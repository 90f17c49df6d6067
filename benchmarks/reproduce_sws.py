"""Reproduce seed 004's soft weight-sharing result on LeNet-300-100.

Seed 004 (full MNIST; Ullrich, Meeds & Welling 2017's recipe): 98.2% accuracy before, 96.9% after SWS at
98.0% sparsity (0.0% before).

Here: the `mnist-5k` built-in (4,000 training / 1,000 test digits, not 60,000 / 10,000), a LeNet-300-100
reference trained with the seeds' recipe (batch 16, SGD lr 0.005, momentum 0.9, Nesterov, StepLR gamma 0.95
per epoch; cached in the temp directory), then a spec with `sws` through the normal pipeline
(`compress_file`: SWS retraining, merge, quantization, `.bin` encoding, decoded-artifact evaluation).
The prior covers the three weight matrices; biases are stored dense.

    PYTHONPATH=. python benchmarks/reproduce_sws.py [--epochs 30 --tau 5e-3 --batch-size 64 ...]

"stored ratio" is the original fp32 state dict's bits over the whole `.bin` file (biases, header and
metadata included); "weights ratio" counts the weight matrices only (LC-style counting of positions,
indices and codebooks, see compression_core/metrics.py).

Measured on the shared 2-core CPU, one torch thread (reference: 20 epochs, 92.6% = 926/1000):

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
from compression_core.spec import parse_spec  # noqa: E402
from compression_core.train import save_state_dict, train_reference  # noqa: E402
from compression_core.training.finetune import RetrainConfig  # noqa: E402

SEED = {"accuracy_before": 98.2, "accuracy_after": 96.9, "sparsity": 98.0}


def reference(epochs: int, cache_dir: Path) -> Path:
    """The LeNet-300-100 reference, trained once and cached (the training is deterministic for a seed)."""
    path = cache_dir / f"lenet300-mnist5k-seedrecipe-e{epochs}-s0.safetensors"
    if path.exists():
        print(f"reference: cached {path}")
        return path
    started = time.perf_counter()
    result = train_reference({"arch": "lenet300"}, load_builtin("mnist-5k"), RetrainConfig(epochs=epochs))
    save_state_dict(result.model, path)
    print(f"reference: trained {epochs} epochs in {time.perf_counter() - started:.0f} s -> {path}")
    return path


def _acc(ev: dict) -> str:
    right = round(ev["top1"] * ev["samples"])
    return f"{100 * ev['top1']:.1f}% ({right}/{ev['samples']})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ref-epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a loaded CPU)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "mcs-bench")
    parser.add_argument("--sws", type=json.loads, default={}, help="overrides of the sws field, as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.cache.mkdir(parents=True, exist_ok=True)
    ref = reference(args.ref_epochs, args.cache)
    sws = {**DEFAULT_SWS, **args.sws}
    spec = parse_spec(
        json.dumps({"model": {"arch": "lenet300"}, "data": {"builtin": "mnist-5k"}, "sws": sws})
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        metrics = compress_file(ref, spec, Path(out))
    took = time.perf_counter() - started
    ev, s, totals = metrics["evaluation"], metrics["sws"], metrics["totals"]
    last = s["history"][-1]
    print(f"sws: {json.dumps(sws)}")
    print(f"SWS + encoding in {took:.0f} s ({metrics['timing']['seconds']['sws']:.0f} s training)")
    print(f"{'':34}{'seed 004 (MNIST 60k/10k)':>30}{'here (mnist-5k 4k/1k)':>30}")
    print(f"{'accuracy before':34}{SEED['accuracy_before']:>29.1f}%{_acc(ev['before']):>30}")
    retrained = f"{100 * (1 - last['test_error']):.1f}%"
    print(f"{'accuracy retrained (not quantized)':34}{'-':>30}{retrained:>30}")
    print(f"{'accuracy after (decoded .bin)':34}{SEED['accuracy_after']:>29.1f}%{_acc(ev['after']):>30}")
    sparsity = f"{100 * s['sparsity']:.1f}% ({s['nonzero']}/{s['weights']} kept)"
    print(f"{'sparsity (weight matrices)':34}{SEED['sparsity']:>29.1f}%{sparsity:>30}")
    merged = f"{s['components_learned']} / {s['components_after_merge']}"
    print(f"{'components (learned / merged)':34}{'17 / -':>30}{merged:>30}")
    print(f"{'distinct non-zero values':34}{'-':>30}{s['nonzero_values_used']:>30}")
    print(f"{'stored ratio (.bin)':34}{'-':>30}{totals['ratio']:>29.1f}x")
    print(f"{'weights ratio (LC counting)':34}{'-':>30}{totals['lc_ratio']:>29.1f}x")


DEFAULT_SWS = {  # the paper's settings, with log-precisions learned faster (fewer steps here)
    "components": 17,
    "pi_zero": 0.99,
    "tau": 5e-3,
    "epochs": 15,
    "batch_size": 64,
    "lr_log_precisions": 1e-2,
    "select": "fc*.weight",
}

if __name__ == "__main__":
    main()
