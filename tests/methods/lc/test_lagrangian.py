"""The LC loop's bookkeeping is the LC toolkit's (`lc/main.py` of UCMerced-ML/LC-model-compression).

`benchmarks/lc_toolkit_side_by_side.py` ran the toolkit's `lc.Algorithm` beside ours on seed 001's mixes
and found the same ranks and ||w - Δ(Θ)|| step by step (docs/reproductions.md): what makes them agree is
that both follow, for k = 0, 1, ...,

    μ_k = μ0 · growth^k
    L step at μ_k towards   t_k = Δ_k + λ_k / μ_k
    C step                  Δ_{k+1} = Π(w_{k+1} - λ_k / μ_k)
    multipliers             λ_{k+1} = λ_k - μ_k (w_{k+1} - Δ_{k+1})

with λ_0 = 0. Here the L step is replaced by a known move of the weights, and every target, Δ and the final
weights are recomputed in numpy (truncated SVD, top-κ magnitudes), independently of the library, so a
change of sign, of which μ divides λ, or of the order of the updates fails this test.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from compression_core.methods.lc import algorithm
from compression_core.methods.lc.lstep import LStepStats
from compression_core.spec import parse_spec

from .conftest import MLP

MU0, GROWTH, STEPS, RANK, KEEP = 0.5, 1.5, 4, 3, 40
RULES = [
    {"select": {"name": "fc1.weight"}, "steps": [{"type": "lowrank", "rank": RANK}]},
    {"select": {"name": "fc2.weight"}, "steps": [{"type": "prune", "keep": KEEP}]},
]


def _rank_r(v: np.ndarray) -> np.ndarray:
    u, s, vt = np.linalg.svd(v.astype(np.float64), full_matrices=False)
    return (u[:, :RANK] * s[:RANK]) @ vt[:RANK]


def _top_k(v: np.ndarray) -> np.ndarray:
    out = np.zeros_like(v, dtype=np.float64)
    flat = v.reshape(-1)
    keep = np.argsort(np.abs(flat), kind="stable")[-KEEP:]
    out.reshape(-1)[keep] = flat[keep]
    return out


PI = {"fc1.weight": _rank_r, "fc2.weight": _top_k}


def _move(w: np.ndarray, name: str, k: int) -> np.ndarray:
    """The stand-in L step: a fixed, step-dependent change of the weights (no data)."""
    rng = np.random.default_rng(100 * k + (1 if name == "fc1.weight" else 2))
    return 0.9 * w + 0.05 * rng.standard_normal(w.shape)


def test_targets_c_steps_and_multipliers_follow_the_augmented_lagrangian(
    reference_model, digits, monkeypatch
):
    seen: list[tuple[float, int, dict[str, np.ndarray]]] = []

    def fake_l_step(model, targets, mu, train_set, config, step, **_kwargs):
        seen.append((mu, step, {n: t.detach().double().numpy().copy() for n, t in targets.items()}))
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name in targets:
                moved = _move(params[name].detach().double().numpy(), name, step)
                params[name].copy_(torch.from_numpy(moved))
        return LStepStats(lr=config.lr, epochs=config.epochs, train_loss=0.0, penalty=0.0, train_accuracy=0.0)

    monkeypatch.setattr(algorithm, "l_step", fake_l_step)
    spec = parse_spec(
        json.dumps(
            {
                "rules": RULES,
                "model": MLP,
                "data": {"builtin": "digits"},
                "lc": {"mu0": MU0, "mu_growth": GROWTH, "steps": STEPS, "multipliers": True},
            }
        )
    )
    state = reference_model.state_dict()
    w = {n: state[n].detach().double().numpy().copy() for n in PI}
    result = algorithm.run_lc(reference_model, spec, digits.train)

    # the independent computation: direct compression Π(w_0), λ_0 = 0, then the loop of the docstring
    delta = {n: PI[n](w[n]) for n in PI}
    lam = {n: np.zeros_like(w[n]) for n in PI}
    assert [s for _, s, _ in seen] == list(range(STEPS))
    for k in range(STEPS):
        mu = MU0 * GROWTH**k
        got_mu, _, targets = seen[k]
        assert got_mu == pytest.approx(mu, rel=1e-12)
        for n in PI:  # float32 weights in the model: agreement to float32 round-off
            expected = delta[n] + lam[n] / mu
            assert np.allclose(targets[n], expected, rtol=1e-4, atol=1e-5), (k, n)
        # the stand-in L step moved the float32 weights; track them as the model holds them
        w = {n: _move(w[n].astype(np.float32).astype(np.float64), n, k) for n in PI}
        w = {n: w[n].astype(np.float32).astype(np.float64) for n in PI}
        delta = {n: PI[n](w[n] - lam[n] / mu) for n in PI}
        lam = {n: lam[n] - mu * (w[n] - delta[n]) for n in PI}

    assert [h.mu for h in result.history] == pytest.approx([MU0] + [MU0 * GROWTH**k for k in range(STEPS)])
    final = reference_model.state_dict()
    for n in PI:  # the result is the last Δ(Θ)
        assert np.allclose(final[n].double().numpy(), delta[n], rtol=1e-4, atol=1e-5), n
    assert result.history[-1].structure == {"fc1.weight": {"rank": RANK}, "fc2.weight": {"kept": KEEP}}
    # λ ≠ 0 mattered: without it the last Δ would differ (so the comparison above is not vacuous)
    plain = {n: PI[n](w[n]) for n in PI}
    assert not np.allclose(plain["fc1.weight"], delta["fc1.weight"], atol=1e-3)
