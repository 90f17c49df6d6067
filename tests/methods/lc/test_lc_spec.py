from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from compression_core.errors import SpecError
from compression_core.methods.lc.spec import LCSpec
from compression_core.spec import example_spec, parse_spec, spec_json_schema

RULES = [{"select": {"name": "fc*.weight"}, "steps": [{"type": "prune", "keep": 10}]}]
MODEL_DATA = {"model": {"arch": "mlp"}, "data": {"builtin": "digits"}}


def test_defaults_are_the_seed_schedule():
    lc = LCSpec()
    assert (lc.mu0, lc.mu_growth, lc.steps) == (5e-5, 1.15, 30)
    assert (lc.l_step.epochs, lc.l_step.lr, lc.l_step.gamma) == (10, 0.2, 0.98)
    mus = lc.mu_schedule()
    assert len(mus) == 30
    assert mus[0] == 5e-5
    assert mus[-1] == pytest.approx(5e-5 * 1.15**29)
    assert all(b / a == pytest.approx(1.15) for a, b in zip(mus, mus[1:], strict=False))


@pytest.mark.parametrize(
    "lc, field",
    [
        ({"mu0": 0}, "mu0"),
        ({"mu0": -1e-3}, "mu0"),
        ({"mu0": 1e12}, "mu0"),
        ({"mu_growth": 0.9}, "mu_growth"),
        ({"mu_growth": 1000}, "mu_growth"),
        ({"steps": 0}, "steps"),
        ({"steps": 100_000}, "steps"),
        ({"eval_every": 0}, "eval_every"),
        ({"l_step": {"epochs": 0}}, "l_step.epochs"),
        ({"l_step": {"lr": 0}}, "l_step.lr"),
        ({"l_step": {"lr": 100}}, "l_step.lr"),
        ({"l_step": {"gamma": 1.5}}, "l_step.gamma"),
        ({"l_step": {"momentum": 1.0}}, "l_step.momentum"),
        ({"l_step": {"batch_size": 0}}, "l_step.batch_size"),
        ({"l_step": {"bogus": 1}}, "l_step.bogus"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_absurd_values_are_refused_naming_the_field(lc, field):
    with pytest.raises(SpecError, match=rf"lc\.{field}"):
        parse_spec(json.dumps({"rules": RULES, **MODEL_DATA, "lc": lc}))


def test_a_schedule_that_overflows_is_refused():
    with pytest.raises(ValidationError, match="μ schedule ends at"):
        LCSpec(mu0=1.0, mu_growth=2.0, steps=100)
    assert LCSpec(mu0=1.0, mu_growth=2.0, steps=20).mu_schedule()[-1] == 2.0**19


def test_lc_needs_model_and_data_and_excludes_retrain():
    with pytest.raises(SpecError, match="needs `model` and `data`"):
        parse_spec(json.dumps({"rules": RULES, "model": {"arch": "mlp"}, "lc": {}}))
    with pytest.raises(SpecError, match="replaces `retrain`"):
        parse_spec(json.dumps({"rules": RULES, **MODEL_DATA, "lc": {}, "retrain": {}}))
    assert parse_spec(json.dumps({"rules": RULES, **MODEL_DATA, "lc": {}})).lc == LCSpec()


def test_schema_publishes_the_lc_field():
    text = json.dumps(spec_json_schema())
    for word in ("LCSpec", "LStepSpec", "mu_growth", "multipliers"):
        assert word in text


def test_shipped_lc_examples():
    for name in (
        "lc-lenet5-mnist5k-prune-conv-lowrank-linear",
        "lc-lenet5-mnist5k-prune-conv-quantize-linear",
    ):
        spec = example_spec(name)
        assert spec.lc is not None and spec.model is not None and spec.data is not None
        assert spec.model.arch == "lenet5" and spec.data.builtin == "mnist-5k"
        assert [r.prune.keep for r in spec.rules[:2]] == [104, 2505]  # type: ignore[union-attr]
        assert spec.lc.mu_schedule()[-1] == pytest.approx(5e-5 * 1.15**29)
