"""N:M (2:4) semi-structured pruning: our vectorized mask (`methods/prune/pattern.py`) beside torch.ao's
`WeightNormSparsifier` with 1x4 blocks and 2 zeros per block (the same 2:4 mask), and beside our unstructured
magnitude pruning to the same 50%, on Linear-shaped weights.

Run: PYTHONPATH=. python benchmarks/bench_nm_prune.py [--shapes 4096x4096 11008x4096] [--repeat 3] [--smoke]
Prints per shape: best-of-`repeat` seconds of each, and whether our mask equals torch.ao's (float32 randn
weights: no ties, so both masks are determined). The step's seconds include the sorted flat positions the
record stores; torch.ao's produce a dense boolean mask only.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.ao.pruning import WeightNormSparsifier

from compression_core.methods.prune.apply import keep_positions
from compression_core.methods.prune.pattern import pattern_positions


def best_of(fn: Callable[[], object], repeat: int) -> tuple[object, float]:
    best, out = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - started)
    return out, best


def torch_ao_mask(weight: torch.Tensor) -> torch.Tensor:
    """torch.ao.pruning's 2:4 mask of `weight` (a Linear holding it, one sparsifier step)."""
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    model = nn.Sequential(layer)
    sparsifier = WeightNormSparsifier(sparsity_level=1.0, sparse_block_shape=(1, 4), zeros_per_block=2)
    sparsifier.prepare(model, [{"tensor_fqn": "0.weight"}])
    sparsifier.step()
    return model[0].parametrizations.weight[0].mask.bool()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["4096x4096", "11008x4096"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="one 256x256 weight, once")
    args = parser.parse_args()
    shapes = ["256x256"] if args.smoke else args.shapes
    repeat = 1 if args.smoke else args.repeat
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()}")
    header = f"{'shape':>12} {'ours 2:4 s':>11} {'torch.ao 2:4 s':>15} {'magnitude 50% s':>16}"
    print(f"{header}  equal to torch.ao")
    for shape in shapes:
        rows, cols = (int(v) for v in shape.split("x"))
        weight = torch.randn(rows, cols, generator=torch.Generator().manual_seed(0))
        _, ours_s = best_of(lambda w=weight: pattern_positions(w, 2, 4), repeat)
        _, ao_s = best_of(lambda w=weight: torch_ao_mask(w), repeat)
        _, magnitude_s = best_of(lambda w=weight: keep_positions(w, w.numel() // 2), repeat)
        mask = torch.zeros(weight.numel(), dtype=torch.bool)
        mask[pattern_positions(weight, 2, 4)] = True
        equal = torch.equal(mask.view(rows, cols), torch_ao_mask(weight))
        print(f"{shape:>12} {ours_s:>11.3f} {ao_s:>15.3f} {magnitude_s:>16.3f}  {equal}")


if __name__ == "__main__":
    main()
