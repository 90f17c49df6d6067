"""Time per training step of soft weight-sharing's prior (−log p(w) and its gradients) on LeNet-300-100's
266,200 weights and 17 components: ours (`MixturePrior`, blocked fused kernel) beside the same loss written
with PyTorch autograd (`torch.logsumexp`), in the same run, one thread.

    PYTHONPATH=. python benchmarks/bench_sws_prior.py [--weights 266200] [--components 17] [--repeats 20]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compression_core.methods.sws.prior import MixturePrior  # noqa: E402
from compression_core.methods.sws.spec import SWSSpec  # noqa: E402


def autograd_nll(prior: MixturePrior, w: torch.Tensor) -> torch.Tensor:
    """The baseline: −Σ_i logsumexp_j(log π_j + ½ log λ_j − ½ log 2π − ½ λ_j (w_i − μ_j)²) by autograd."""
    lam = prior.log_precisions.exp()
    offset = prior.log_pis() + 0.5 * prior.log_precisions - 0.5 * math.log(2 * math.pi)
    joint = offset - 0.5 * lam * (w[:, None] - prior.all_means()) ** 2
    return -torch.logsumexp(joint, dim=1).sum()


def time_step(loss_of: Callable[[], torch.Tensor], params: list[torch.Tensor], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats + 2):
        for p in params:
            p.grad = None
        started = time.perf_counter()
        loss_of().backward()
        times.append(time.perf_counter() - started)
    return times[2:]  # the first two warm up


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=int, default=266_200)
    parser.add_argument("--components", type=int, default=17)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    w = (0.05 * torch.randn(args.weights)).requires_grad_(True)
    prior = MixturePrior([w.detach()], SWSSpec(components=args.components, select="*"))
    params = [w, *prior.parameters()]

    ours = time_step(lambda: -prior.log_prob(w), params, args.repeats)
    grads_ours = [p.grad.clone() for p in params if p.grad is not None]
    baseline = time_step(lambda: autograd_nll(prior, w), params, args.repeats)
    grads_base = [p.grad.clone() for p in params if p.grad is not None]
    worst = max(
        float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))
        for a, b in zip(grads_ours, grads_base, strict=True)
    )

    ms_ours, ms_base = 1e3 * statistics.median(ours), 1e3 * statistics.median(baseline)
    print(
        f"SWS prior, {args.weights:,} weights x {args.components} components, 1 thread, "
        f"median of {args.repeats}:"
    )
    print(f"  PyTorch autograd logsumexp (baseline)  {ms_base:8.1f} ms/step")
    print(
        f"  ours (blocked fused kernel)            {ms_ours:8.1f} ms/step   {ms_base / ms_ours:.2f}x faster"
    )
    print(f"  largest gradient difference, relative to the gradient's largest entry: {worst:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
