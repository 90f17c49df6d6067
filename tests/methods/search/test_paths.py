"""Numeric spec fields by path, and the up-front check that names the path a trial cannot use."""

from __future__ import annotations

import pytest

from compression_core.methods.search.paths import (
    SearchPathError,
    get_value,
    set_value,
    trial_spec,
    validate_trials,
)
from compression_core.spec import Spec

BASE = Spec.model_validate(
    {
        "model": {"arch": "mlp", "kwargs": {"sizes": [64, 32, 10]}},
        "data": {"builtin": "digits"},
        "rules": [
            {
                "select": {"name": "*.weight"},
                "steps": [{"type": "prune", "sparsity": 0.5}, {"type": "quantize", "k": 8}],
            }
        ],
        "retrain": {"prune": {"epochs": 1}},
    }
).model_dump(mode="json")


def test_get_and_set_by_path_leave_the_base_untouched() -> None:
    assert get_value(BASE, "rules.0.steps.1.k") == 8
    spec = trial_spec(BASE, {"rules.0.steps.1.k": 4, "retrain.prune.lr": 0.1})
    assert spec["rules"][0]["steps"][1]["k"] == 4 and spec["retrain"]["prune"]["lr"] == 0.1
    assert BASE["rules"][0]["steps"][1]["k"] == 8 and "search" not in spec
    Spec.model_validate(spec)


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("rules.1.steps.0.sparsity", "rules.1 does not exist"),
        ("rules.0.steps.0.amount", "rules.0.steps.0.amount is not a field"),
        ("rules.0.select.name", "not a numeric field"),
        ("rules.0.select.include_bias_and_norm", "not a numeric field"),
        ("retrain.finetune.epochs", "retrain.finetune is not set in the spec"),
    ],
)
def test_a_path_that_cannot_hold_a_number_is_named(path: str, words: str) -> None:
    with pytest.raises(SearchPathError) as caught:
        set_value(trial_spec(BASE, {}), path, 1)
    assert caught.value.loc == ("search", "parameters", path)
    assert words in str(caught.value)


def test_a_refused_value_blames_its_own_parameter() -> None:
    with pytest.raises(SearchPathError) as caught:
        validate_trials(BASE, [{"rules.0.steps.0.sparsity": 0.5, "rules.0.steps.1.k": 1}])
    assert caught.value.path == "rules.0.steps.1.k"
    assert "greater than or equal to 2" in str(caught.value)
    validate_trials(BASE, [{"rules.0.steps.0.sparsity": 0.9, "rules.0.steps.1.k": 2}])


def test_the_search_field_is_validated_with_the_spec() -> None:
    spec = {**BASE, "search": {"mode": "grid", "parameters": {"rules.0.steps.0.sparsity": [0.2, 1.0]}}}
    with pytest.raises(ValueError, match="search.parameters.rules.0.steps.0.sparsity"):
        Spec.model_validate(spec)
    too_many = {
        "mode": "grid",
        "parameters": {"rules.0.steps.0.sparsity": [0.1, 0.2], "rules.0.steps.1.k": [2, 4, 8]},
        "max_trials": 5,
    }
    with pytest.raises(ValueError, match="6 points, more than max_trials=5"):
        Spec.model_validate({**BASE, "search": too_many})
    with pytest.raises(ValueError, match="max_error_increase"):
        Spec.model_validate(
            {
                **BASE,
                "search": {"mode": "budget", "parameters": {"rules.0.steps.1.k": {"low": 2, "high": 16}}},
            }
        )
