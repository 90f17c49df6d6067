"""The Gaussian-mixture prior of soft weight-sharing and its post-processing (merge, then quantize).

p(w) = Π_i Σ_j π_j N(w_i | μ_j, 1/λ_j). Component 0 is the pruning component: μ_0 = 0 and π_0 fixed; its
precision is learned. The other J − 1 components learn means, log-precisions and mixing proportions
(π_j = (1 − π_0) softmax(ρ)_j, so the proportions always sum to one). Gamma hyperpriors on the
precisions keep a component from collapsing onto a single weight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from compression_core.methods.sws.spec import GammaPrior, SWSSpec

__all__ = ["MixturePrior", "Mixture", "assign", "merge_components"]

_CHUNK = 1 << 18  # weights per block when computing responsibilities (bounds memory at J x 256k)
_STEP_BLOCK = 1 << 14  # weights per block in the training step's prior (its buffers stay in cache)
_LOWEST_EXPONENT = -80.0  # exp(-80) = 1.8e-35: nothing beside the largest term's 1, still a normal float


@dataclass
class Mixture:
    """A mixture's parameters as plain float64 arrays (component 0 is the zero component)."""

    means: np.ndarray
    log_precisions: np.ndarray
    log_pis: np.ndarray

    def __len__(self) -> int:
        return len(self.means)


class MixturePrior(nn.Module):
    """−log p(w) (plus the Gamma hyperpriors) as a differentiable loss over a list of weight tensors."""

    def __init__(self, weights: list[torch.Tensor], spec: SWSSpec):
        super().__init__()
        flat = torch.cat([w.detach().reshape(-1).float().cpu() for w in weights])
        top = float(flat.abs().max()) if flat.numel() else 1.0
        top = top if top > 0 else 1.0
        j = spec.components
        lo, hi = float(flat.min()), float(flat.max())
        # the learned means start evenly spread over the range of the pretrained weights
        self.means = nn.Parameter(torch.linspace(lo, hi, j - 1, dtype=torch.float32))
        std = spec.init_std * top
        self.log_precisions = nn.Parameter(torch.full((j,), -2.0 * math.log(std), dtype=torch.float32))
        self.rhos = nn.Parameter(torch.zeros(j - 1, dtype=torch.float32))
        self.pi_zero = spec.pi_zero
        self.gamma_zero = spec.gamma_zero
        self.gamma_other = spec.gamma_other
        self.max_log_precision = spec.max_log_precision

    def all_means(self) -> torch.Tensor:
        return torch.cat([self.means.new_zeros(1), self.means])

    def log_pis(self) -> torch.Tensor:
        rest = math.log1p(-self.pi_zero) + torch.log_softmax(self.rhos, 0)
        return torch.cat([rest.new_full((1,), math.log(self.pi_zero)), rest])

    def clamp_(self) -> None:
        """Keep log λ bounded (a component squeezed onto a few identical weights would run to infinity)."""
        with torch.no_grad():
            self.log_precisions.clamp_(max=self.max_log_precision)

    def log_prob(self, w: torch.Tensor) -> torch.Tensor:
        """Σ_i log p(w_i) over the flat weights `w`."""
        gam = self.log_precisions
        offset = self.log_pis() + 0.5 * gam - 0.5 * math.log(2 * math.pi)
        return -_MixtureNLL.apply(w, self.all_means(), gam.exp(), offset)

    def hyperprior(self) -> torch.Tensor:
        """−log of the Gamma hyperpriors on the precisions (up to constants)."""
        total = self.log_precisions.new_zeros(())
        for prior, gam in (
            (self.gamma_zero, self.log_precisions[:1]),
            (self.gamma_other, self.log_precisions[1:]),
        ):
            if prior is not None:
                total = total + _gamma_nll(prior, gam)
        return total

    def forward(self, weights: list[torch.Tensor]) -> torch.Tensor:
        """−log p(w) − log p(λ) over every weight of `weights`."""
        flat = torch.cat([w.reshape(-1) for w in weights])
        return -self.log_prob(flat) + self.hyperprior()

    def mixture(self) -> Mixture:
        return Mixture(
            means=self.all_means().detach().double().cpu().numpy(),
            log_precisions=self.log_precisions.detach().double().cpu().numpy(),
            log_pis=self.log_pis().detach().double().cpu().numpy(),
        )


class _MixtureNLL(torch.autograd.Function):
    """−Σ_i logsumexp_j (a_j − ½ λ_j (w_i − μ_j)²) with its gradients computed in the forward pass from
    the responsibilities r_ij (about twice as fast as autograd, which keeps more N x J temporaries), in
    blocks of `_STEP_BLOCK` weights so that each block's buffers stay in cache, exponents clamped at
    `_LOWEST_EXPONENT` (narrow components put most terms below exp's underflow, its slow path);
    benchmarks/bench_sws_prior.py measures it beside autograd."""

    @staticmethod
    def forward(
        ctx: Any, w: torch.Tensor, means: torch.Tensor, lam: torch.Tensor, a: torch.Tensor
    ) -> torch.Tensor:
        grad_w = torch.empty_like(w)
        grad_means, grad_lam, grad_a = (torch.zeros_like(means) for _ in range(3))
        total = w.new_zeros(())
        for start in range(0, w.numel(), _STEP_BLOCK):
            d = w[start : start + _STEP_BLOCK, None] - means
            d2 = d * d
            joint = a - 0.5 * lam * d2
            top = joint.max(dim=1, keepdim=True).values
            # in place: one buffer for the joint, then the responsibilities. Clamped: exp of anything lower
            # underflows (to nothing beside top's 1 in the sum) and takes libm's ~50x slower path
            r = joint.sub_(top).clamp_(min=_LOWEST_EXPONENT).exp_()
            block_total = r.sum(1, keepdim=True)
            r.div_(block_total)
            grad_a -= r.sum(0)
            rd = r * d
            grad_lam += 0.5 * r.mul_(d2).sum(0)
            grad_w[start : start + _STEP_BLOCK] = rd @ lam
            grad_means -= lam * rd.sum(0)
            total -= (top + block_total.log()).sum()
        ctx.save_for_backward(grad_w, grad_means, grad_lam, grad_a)
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(grad * g for g in ctx.saved_tensors)


def _gamma_nll(prior: GammaPrior, log_precision: torch.Tensor) -> torch.Tensor:
    return ((1.0 - prior.shape) * log_precision + prior.rate * log_precision.exp()).sum()


def _kl(mixture: Mixture) -> np.ndarray:
    """KL(N_i || N_j) for every pair of components (J x J)."""
    m, g = mixture.means, mixture.log_precisions
    lam = np.exp(g)
    return (
        0.5 * (g[:, None] - g[None, :])
        + 0.5 * lam[None, :] * (1.0 / lam[:, None] + (m[:, None] - m[None, :]) ** 2)
        - 0.5
    )


def merge_components(mixture: Mixture, threshold: float) -> Mixture:
    """Merge components whose KL divergence (either direction) is below `threshold`, transitively.

    A merged component has the π-weighted mean and precision and the summed π. The group holding the zero
    component stays at mean exactly 0, so the weights it takes are pruned.
    """
    j = len(mixture)
    close = _kl(mixture) < threshold
    close = close | close.T
    group = np.arange(j)
    for _ in range(j):  # label propagation: each component takes the smallest label of its close neighbours
        new = np.where(close, group[None, :], j).min(axis=1)
        new = np.minimum(new, group)
        if np.array_equal(new, group):
            break
        group = new
    labels = np.unique(group)  # component 0 has label 0, so it comes first
    pis = np.exp(mixture.log_pis)
    means, log_precisions, log_pis = [], [], []
    for label in labels:
        members = group == label
        weight = pis[members] / pis[members].sum()
        means.append(0.0 if label == 0 else float((weight * mixture.means[members]).sum()))
        log_precisions.append(float(np.log((weight * np.exp(mixture.log_precisions[members])).sum())))
        log_pis.append(float(np.log(pis[members].sum())))
    return Mixture(np.array(means), np.array(log_precisions), np.array(log_pis))


def assign(weights: torch.Tensor, mixture: Mixture) -> torch.Tensor:
    """The most responsible component of each weight: argmax_j log π_j + ½ log λ_j − ½ λ_j (w − μ_j)²."""
    flat = weights.detach().reshape(-1).double().cpu()
    means = torch.from_numpy(mixture.means)
    gam = torch.from_numpy(mixture.log_precisions)
    bias = torch.from_numpy(mixture.log_pis) + 0.5 * gam
    lam = gam.exp()
    out = torch.empty(flat.numel(), dtype=torch.int64)
    for start in range(0, flat.numel(), _CHUNK):
        block = flat[start : start + _CHUNK]
        out[start : start + _CHUNK] = (bias - 0.5 * lam * (block[:, None] - means) ** 2).argmax(dim=1)
    return out
