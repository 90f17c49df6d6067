from __future__ import annotations

import json

import pytest
import torch

from compression_core.job.pipeline import compress_state_dict
from compression_core.methods.lc.cstep import c_step, rule_at_mu, shifted_weights, spec_at_mu
from compression_core.records import TensorRecord
from compression_core.select import select_tensors
from compression_core.spec import parse_spec

STATE_SHAPES = {
    "conv.weight": (8, 3, 3, 3),
    "conv.bias": (8,),
    "a.weight": (40, 30),
    "b.weight": (30, 20),
    "c.weight": (20, 10),
    "d.weight": (12, 16),
    "e.weight": (16, 10),
    "e.bias": (10,),
}
SPEC = {
    "rules": [
        {"select": {"name": "conv.weight"}, "steps": [{"type": "prune", "keep": 50}]},
        {"select": {"name": "a.weight"}, "steps": [{"type": "quantize", "k": 4}]},
        {"select": {"name": "b.weight"}, "steps": [{"type": "lowrank", "alpha": 1e-4, "mu": 99.0}]},
        {
            "select": {"name": "c.weight"},
            "steps": [{"type": "prune", "sparsity": 0.7}, {"type": "quantize", "k": 3}],
        },
        {
            "select": {"name": ["d.weight", "e.weight"]},
            "steps": [{"type": "prune", "keep": 60, "scope": "global"}],
        },
    ],
    "model": {"arch": "mlp"},
    "data": {"builtin": "digits"},
    "lc": {"mu0": 1e-3},
}


def _state(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {name: torch.randn(shape, generator=g) * 0.1 for name, shape in STATE_SHAPES.items()}


def _same(a: TensorRecord, b: TensorRecord) -> None:
    assert a.method == b.method
    for field in ("values", "positions", "codebook", "indices"):
        x, y = getattr(a, field), getattr(b, field)
        assert (x is None) == (y is None), field
        if x is not None:
            assert torch.equal(x, y), field
    assert (a.factors is None) == (b.factors is None)
    if a.factors is not None:
        assert all(torch.equal(x, y) for x, y in zip(a.factors, b.factors, strict=True))
    assert torch.equal(a.reconstruct(), b.reconstruct())


@pytest.mark.parametrize("mu", [1e-3, 0.5, 40.0])
def test_c_step_is_direct_compression_of_the_shifted_weights(mu):
    spec = parse_spec(json.dumps(SPEC))
    weights = _state()
    g = torch.Generator().manual_seed(1)
    lambdas = {n: torch.randn(w.shape, generator=g) * 1e-3 for n, w in weights.items()}
    selections = select_tensors(weights, spec)
    records = c_step(weights, selections, mu, lambdas={n: lambdas[n] for n in selections})

    shifted = {n: w - lambdas[n] / mu for n, w in weights.items()}
    direct, _ = compress_state_dict(shifted, spec_at_mu(spec, mu))
    direct_by_name = {r.name: r for r in direct}
    assert set(records) == set(selections) == set(STATE_SHAPES) - {"conv.bias", "e.bias"}
    for name, record in records.items():
        _same(record, direct_by_name[name])
    # the global rule splits κ = 60 over its tensors by one ranking of the shifted weights
    assert records["d.weight"].positions.numel() + records["e.weight"].positions.numel() == 60
    assert records["b.weight"].stats["rank_selection"] == "alpha"


def test_without_multipliers_the_c_step_compresses_w_itself():
    spec = parse_spec(json.dumps(SPEC))
    weights = _state(2)
    selections = select_tensors(weights, spec)
    plain = c_step(weights, selections, 0.3)
    zero = c_step(weights, selections, 0.3, lambdas={n: torch.zeros_like(weights[n]) for n in selections})
    for name in plain:
        _same(plain[name], zero[name])
    assert all(torch.equal(a, weights[n]) for n, a in shifted_weights(weights, None, 0.3).items())


def test_rank_selection_follows_mu():
    spec = parse_spec(json.dumps(SPEC))
    rule = spec.rules[2]
    assert rule_at_mu(rule, 7.0).lowrank.mu == 7.0  # type: ignore[union-attr]
    assert rule.lowrank.mu == 99.0  # type: ignore[union-attr]  # the spec itself is not modified
    assert rule_at_mu(spec.rules[0], 7.0) is spec.rules[0]
    weights = _state(3)
    selections = {"b.weight": select_tensors(weights, spec)["b.weight"]}
    ranks = [
        c_step(weights, selections, mu)["b.weight"].factors[0].shape[1] for mu in (1e-4, 1e-2, 1.0, 100.0)
    ]
    assert ranks == sorted(ranks) and ranks[0] < ranks[-1]  # larger μ: the storage cost weighs less
