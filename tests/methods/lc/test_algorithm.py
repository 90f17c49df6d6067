from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import TensorDataset

from compression_core.errors import Cancelled, InputError, SpecError, TrainingDiverged
from compression_core.evaluate import evaluate
from compression_core.methods.lc.algorithm import compressed_weights, run_lc
from compression_core.methods.lc.lstep import l_step, lc_penalty
from compression_core.methods.lc.spec import LStepSpec
from compression_core.spec import parse_spec

from .conftest import MLP

FIXED = [  # fixed constraints, so direct compression and LC produce the same structure
    {"select": {"name": "fc1.weight"}, "steps": [{"type": "prune", "keep": 150}]},
    {"select": {"name": "fc2.weight"}, "steps": [{"type": "quantize", "k": 2}]},
]
MIXED = [
    {"select": {"name": "fc1.weight"}, "steps": [{"type": "lowrank", "alpha": 2e-5}]},
    {
        "select": {"name": "fc2.weight"},
        "steps": [{"type": "prune", "keep": 60}, {"type": "quantize", "k": 3}],
    },
]


def _spec(rules, **lc):
    schedule = {
        "mu0": 1e-3,
        "mu_growth": 2.0,
        "steps": 8,
        "l_step": {"epochs": 2, "lr": 0.1, "batch_size": 64},
    }
    schedule.update(lc)
    return parse_spec(
        json.dumps({"rules": rules, "model": MLP, "data": {"builtin": "digits"}, "lc": schedule})
    )


def test_lc_beats_direct_compression(reference_model, digits):
    """Same constraints (κ = 150 on fc1, k = 2 on fc2): LC's compressed model has a lower training loss and
    a lower test error than the direct compression of the reference it started from."""
    result = run_lc(reference_model, _spec(FIXED), digits.train, eval_set=digits.test)
    direct, final = result.history[0], result.history[-1]
    assert final.validation_error < direct.validation_error - 0.1  # direct: ~50% error; LC: ~10%
    assert final.validation_loss < direct.validation_loss
    lc_train = evaluate(reference_model, digits.train, timing=False)  # the model now holds Δ(Θ)
    assert lc_train.loss < 0.6 * direct.validation_loss
    assert final.constraint_gap < 0.25 * direct.constraint_gap  # w and Δ(Θ) converge as μ grows


def test_final_model_satisfies_the_constraints_exactly(reference_model, digits):
    spec = _spec(MIXED, steps=5)
    result = run_lc(reference_model, spec, digits.train, eval_set=digits.test)
    state = reference_model.state_dict()
    fc1, fc2 = result.records["fc1.weight"], result.records["fc2.weight"]
    # the model holds exactly Δ(Θ) on the compressed tensors
    for name, record in result.records.items():
        assert torch.equal(state[name], record.reconstruct())
    # fc2: κ = 60 kept, at most 3 distinct values among them
    w2 = state["fc2.weight"]
    assert fc2.positions.numel() == 60 and int(torch.count_nonzero(w2)) <= 60
    assert torch.unique(w2.flatten()[fc2.positions]).numel() <= 3
    # fc1: the rank the last C step selected (alpha with the last μ)
    rank = fc1.factors[0].shape[1]
    assert 0 < rank < 48
    assert int(torch.linalg.matrix_rank(state["fc1.weight"], rtol=1e-4)) == rank  # float32 round-off
    assert result.history[-1].structure == {
        "fc1.weight": {"rank": rank},
        "fc2.weight": {"kept": 60, "codebook": 3},
    }
    # biases are not compressed, but trained
    assert "fc1.bias" not in result.records


def test_history_callbacks_and_evaluation_cadence(reference_model, digits):
    seen = []
    spec = _spec(FIXED, steps=5, eval_every=2, l_step={"epochs": 1, "lr": 0.1, "batch_size": 128})
    result = run_lc(reference_model, spec, digits.train, eval_set=digits.test, on_step=seen.append)
    assert [s.step for s in seen] == [0, 1, 2, 3, 4, 5] and seen == result.history
    assert [s.validation_error is not None for s in seen] == [True, False, True, False, True, True]
    assert [s.mu for s in seen] == pytest.approx([1e-3, 1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2])
    assert seen[1].lr == pytest.approx(0.1) and seen[3].lr == pytest.approx(0.1 * 0.98**2)
    assert all(s.train_loss is not None and s.penalty >= 0 for s in seen[1:])
    assert seen[-1].validation_samples == len(digits.test)


def test_cancel_between_steps(reference_model, digits):
    steps = []

    def cancel() -> bool:
        return len(steps) >= 2

    with pytest.raises(Cancelled):
        run_lc(reference_model, _spec(FIXED), digits.train, on_step=steps.append, should_cancel=cancel)
    assert len(steps) == 2


def test_quadratic_penalty_without_multipliers_also_converges(reference_model, digits):
    result = run_lc(reference_model, _spec(FIXED, multipliers=False), digits.train, eval_set=digits.test)
    assert result.history[-1].validation_error < result.history[0].validation_error
    assert result.history[-1].constraint_gap < result.history[0].constraint_gap


def test_l_step_penalty_pulls_towards_the_target(reference_model, digits):
    params = dict(reference_model.named_parameters())
    target = {"fc1.weight": torch.zeros_like(params["fc1.weight"])}
    mu = 3.0
    expected = mu / 2 * float((params["fc1.weight"].detach() ** 2).sum())
    assert float(lc_penalty(params, target, mu).detach()) == pytest.approx(expected, rel=1e-5)
    before = float(params["fc1.weight"].detach().norm())
    l_step(reference_model, target, 50.0, digits.train, LStepSpec(epochs=1, lr=0.01, batch_size=64), 0)
    assert float(params["fc1.weight"].detach().norm()) < 0.1 * before


def test_compressed_weights_are_restored(reference_model):
    before = {k: v.clone() for k, v in reference_model.state_dict().items()}
    with compressed_weights(reference_model, {"fc1.weight": torch.zeros(48, 64)}) as model:
        assert float(model.fc1.weight.detach().abs().sum()) == 0.0
    assert all(torch.equal(before[k], v) for k, v in reference_model.state_dict().items())


def test_spec_without_lc_or_matching_tensors(reference_model, digits):
    plain = parse_spec(json.dumps({"rules": FIXED}))
    with pytest.raises(SpecError, match="needs a spec with an `lc`"):
        run_lc(reference_model, plain, digits.train)
    with pytest.raises(SpecError, match="selects no tensor"):
        run_lc(
            reference_model,
            _spec([{"select": {"name": "nope*"}, "steps": [{"type": "prune", "keep": 1}]}]),
            digits.train,
        )


def test_a_diverging_l_step_fails_naming_step_and_lr(reference_model, digits):
    """Inputs scaled past float32's range make the first L step's loss NaN or infinite: the run stops there
    with `TrainingDiverged` (a CompressionError, so the job fails with this message) instead of compressing
    NaN weights."""
    x, y = digits.train.tensors
    overflowing = TensorDataset(x * 1e37, y)
    spec = _spec(FIXED, steps=3, l_step={"epochs": 1, "lr": 0.1, "batch_size": 64})
    with pytest.raises(TrainingDiverged, match=r"LC L step 1/3 diverged: training loss (nan|inf) at lr 0.1"):
        run_lc(reference_model, spec, overflowing)


def test_a_non_finite_reference_is_an_input_error(reference_model, digits):
    with torch.no_grad():
        reference_model.fc1.weight[0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN or infinity in the uploaded model"):
        run_lc(reference_model, _spec(FIXED, steps=1), digits.train)
