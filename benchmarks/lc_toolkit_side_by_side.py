"""Rank selection of the LC toolkit beside ours, on the same weights: where seed 001's α lives.

Seed 001 reports LeNet-5 with low-rank linears at α = 2.5e-9 selecting ranks of a few (37.7x); the project's
shipped example with that α kept fc1 at rank 485 of 500. This script runs the toolkit's own C step
(`lc.compression_types.low_rank.RankSelection`, UCMerced-ML/LC-model-compression, imported from a checkout
given with --toolkit; never vendored) and ours (`compression_core.methods.lowrank.select_rank`) on the same
fc1/fc2 weights of one LeNet-5 reference, at μ values of seed 001's schedule, with `normalize` off and on.

What it shows (measured, see the README table): both implementations select identical ranks for identical
settings, so the C step is not what differs; the seed's α is on the *normalized* scale: the toolkit's
LeNet-5 setup (examples/cvpr2020 `lenet5_all`, class `lenet_all_normalized`) constructs
`RankSelection(..., normalize=True)`, dividing the dropped energy by ||W||². Without it α must be rescaled per
layer, α_unnormalized = α_normalized · ||W||_F² (multiply the objective by ||W||²), which is why the shipped
examples now set `"normalize": true`.

    git clone https://github.com/UCMerced-ML/LC-model-compression /tmp/lc-toolkit   (or any checkout)
    PYTHONPATH=. python benchmarks/lc_toolkit_side_by_side.py --toolkit /tmp/lc-toolkit [--data mnist-5k]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compression_core.data import load_builtin  # noqa: E402
from compression_core.io import load_state_dict  # noqa: E402
from compression_core.methods.lowrank.apply import select_rank  # noqa: E402
from compression_core.methods.lowrank.spec import LowRankStep  # noqa: E402
from compression_core.spec.fields import RetrainConfig  # noqa: E402
from compression_core.train import save_state_dict, train_reference  # noqa: E402

SEED_ALPHA = 2.5e-9
MU0, GROWTH, STEPS = 5e-5, 1.15, 30


def reference(data: str, epochs: int, cache: Path) -> dict[str, torch.Tensor]:
    path = cache / f"lenet5-{data}-seedrecipe-e{epochs}-s0-val.safetensors"
    if not path.exists():
        started = time.perf_counter()
        result = train_reference({"arch": "lenet5"}, load_builtin(data), RetrainConfig(epochs=epochs))
        save_state_dict(result.model, path)
        print(f"reference: trained {epochs} epochs on {data} in {time.perf_counter() - started:.0f} s")
    return load_state_dict(path)


def toolkit_rank(toolkit: Path, weight: np.ndarray, alpha: float, mu: float, normalize: bool) -> int:
    sys.path.insert(0, str(toolkit))
    from lc.compression_types.low_rank import RankSelection  # the toolkit's own C step

    c = RankSelection(
        conv_scheme="scheme_1", alpha=alpha, criterion="storage", normalize=normalize, module=None
    )
    c.mu, c.step_number = mu, 0
    with contextlib.redirect_stdout(io.StringIO()):  # it prints one line per call
        c.compress(weight.astype(np.float64))
    return int(c.selected_rank)


def our_rank(weight: torch.Tensor, alpha: float, mu: float, normalize: bool) -> int:
    s = torch.linalg.svdvals(weight.double())
    step = LowRankStep(alpha=alpha, mu=mu, normalize=normalize)
    return select_rank(s, weight.shape[0], weight.shape[1], step)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--toolkit",
        type=Path,
        default=os.environ.get("MCS_LC_TOOLKIT"),
        help="a checkout of LC-model-compression (default: $MCS_LC_TOOLKIT)",
    )
    parser.add_argument("--data", default="mnist-5k", choices=["mnist-5k", "fashion-mnist"])
    parser.add_argument("--reference-epochs", type=int, default=8)
    parser.add_argument("--alpha", type=float, default=SEED_ALPHA)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "mcs-reproduce-lc")
    args = parser.parse_args()
    if args.toolkit is None or not (Path(args.toolkit) / "lc" / "compression_types").is_dir():
        print(
            "not run: give --toolkit (or MCS_LC_TOOLKIT) pointing at a checkout of "
            "UCMerced-ML/LC-model-compression"
        )
        return 0
    torch.set_num_threads(1)
    args.cache.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    state = reference(args.data, args.reference_epochs, args.cache)
    mus = [MU0 * GROWTH**k for k in (0, 10, 20, STEPS - 1)]
    print(
        f"\nrank selected at α = {args.alpha:g} (storage criterion), toolkit | ours, "
        f"on {args.data}'s reference"
    )
    print(f"{'layer':10}{'||W||²':>9}{'mu':>10}{'normalize=False':>20}{'normalize=True':>20}")
    agree = True
    for name in ("fc1.weight", "fc2.weight"):
        w = state[name].float()
        energy = float((w.double() ** 2).sum())
        for mu in mus:
            cells = []
            for normalize in (False, True):
                theirs = toolkit_rank(args.toolkit, w.numpy(), args.alpha, mu, normalize)
                ours = our_rank(w, args.alpha, mu, normalize)
                agree &= theirs == ours
                cells.append(f"{theirs:>4} | {ours:<4}")
            print(f"{name:10}{energy:>9.1f}{mu:>10.2e}{cells[0]:>20}{cells[1]:>20}")
        rescaled = args.alpha * energy
        r = [our_rank(w, rescaled, mu, False) for mu in mus]
        print(f"{'':10}  α·||W||² = {rescaled:.3g} without normalize selects ranks {r} at those mu")
    print(f"\ntoolkit and ours agree on every cell: {agree}; {time.perf_counter() - started:.0f} s")
    return 0 if agree else 1


if __name__ == "__main__":
    raise SystemExit(main())
