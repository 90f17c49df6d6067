from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from compression_core.methods.sws.algorithm import quantize_to_mixture
from compression_core.methods.sws.prior import Mixture, MixturePrior, assign, merge_components
from compression_core.methods.sws.spec import SWSSpec


def _mixture(means, sigmas, pis) -> Mixture:
    return Mixture(
        means=np.array(means, float),
        log_precisions=-2 * np.log(np.array(sigmas, float)),
        log_pis=np.log(np.array(pis, float)),
    )


def test_log_prob_is_the_mixture_density():
    w = torch.nn.Parameter(torch.randn(50, 20) * 0.1)
    prior = MixturePrior([w], SWSSpec(components=4, pi_zero=0.9))
    with torch.no_grad():
        prior.means.copy_(torch.tensor([-0.2, 0.1, 0.3]))
        prior.log_precisions.copy_(torch.tensor([6.0, 5.0, 4.0, 3.0]))
        prior.rhos.copy_(torch.tensor([0.0, 1.0, -1.0]))
    x = w.detach().double().reshape(-1).numpy()
    pis = np.concatenate([[0.9], 0.1 * np.exp([0.0, 1.0, -1.0]) / np.exp([0.0, 1.0, -1.0]).sum()])
    sigmas = np.exp(-0.5 * np.array([6.0, 5.0, 4.0, 3.0]))
    means = np.array([0.0, -0.2, 0.1, 0.3])
    density = (pis * norm.pdf(x[:, None], means, sigmas)).sum(1)
    with torch.no_grad():
        assert float(prior.log_prob(w.reshape(-1))) == pytest.approx(np.log(density).sum(), rel=1e-5)
        loss = float(prior([w]))
    assert float(prior.log_pis().detach().exp().sum()) == pytest.approx(1.0)
    # the loss adds the Gamma hyperpriors: (1 - shape) log λ + rate λ per component
    lam = np.exp([6.0, 5.0, 4.0, 3.0])
    hyper = (1 - 5e3) * 6.0 + 2.0 * lam[0] + sum((1 - 250) * math.log(v) + 0.1 * v for v in lam[1:])
    assert loss == pytest.approx(-np.log(density).sum() + hyper, rel=1e-5)


def test_merge_joins_close_components_and_keeps_zero_exact():
    mixture = _mixture(
        [0.0, 0.0005, 0.3, 0.3001, -0.4], [0.02, 0.02, 0.02, 0.02, 0.02], [0.9, 0.02, 0.03, 0.01, 0.04]
    )
    merged = merge_components(mixture, threshold=1e-2)
    assert len(merged) == 3
    assert merged.means[0] == 0.0  # the group holding the zero component stays at zero
    assert np.exp(merged.log_pis).sum() == pytest.approx(1.0)
    assert merged.means[1] == pytest.approx((0.3 * 0.03 + 0.3001 * 0.01) / 0.04)
    assert merged.means[2] == pytest.approx(-0.4)
    assert len(merge_components(mixture, threshold=0.0)) == 5


def test_assign_takes_the_most_responsible_component():
    mixture = _mixture([0.0, 0.5, -0.5], [0.05, 0.05, 0.05], [0.98, 0.01, 0.01])
    w = torch.tensor([0.0, 0.05, 0.45, -0.6, 0.2, 0.3])
    # with π_0 = 0.98 the zero component wins until ~ 0.25 + σ² log(98) / 0.5 ≈ 0.273
    assert assign(w, mixture).tolist() == [0, 0, 1, 2, 0, 1]


def test_quantized_record_has_few_values_and_exact_zeros():
    torch.manual_seed(0)
    mixture = _mixture([0.0, 0.2, -0.2, 0.4, 0.41], [0.03] * 5, [0.9, 0.025, 0.025, 0.025, 0.025])
    w = torch.randn(40, 30) * 0.2
    record = quantize_to_mixture("fc.weight", w, mixture)
    dense = record.reconstruct()
    nonzero = dense[dense != 0]
    assert torch.unique(nonzero).numel() <= len(mixture) - 1
    assert record.positions.numel() == int(torch.count_nonzero(dense))
    assert set(torch.unique(nonzero).tolist()) <= {float(np.float32(m)) for m in mixture.means[1:]}
    expected = torch.from_numpy(mixture.means).float()[assign(w, mixture)].reshape(w.shape)
    assert torch.equal(dense, expected)
    assert record.codebook.numel() == torch.unique(nonzero).numel()  # unused components are not stored


def test_hand_written_gradients_match_autograd():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(300, dtype=torch.float64) * 0.1)
    prior = MixturePrior([w], SWSSpec(components=5)).double()
    with torch.no_grad():
        prior.rhos.copy_(torch.tensor([0.3, -0.2, 0.1, 0.0]))
    fast = prior([w])
    fast_grads = torch.autograd.grad(fast, [w, *prior.parameters()])

    gam = prior.log_precisions
    joint = (
        prior.log_pis()
        + 0.5 * gam
        - 0.5 * math.log(2 * math.pi)
        - 0.5 * gam.exp() * (w[:, None] - prior.all_means()) ** 2
    )
    slow = -torch.logsumexp(joint, dim=1).sum() + prior.hyperprior()
    slow_grads = torch.autograd.grad(slow, [w, *prior.parameters()])
    assert float(fast.detach()) == pytest.approx(float(slow.detach()), rel=1e-12)
    for a, b in zip(fast_grads, slow_grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)
