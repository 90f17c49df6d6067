import json

import pytest
from pydantic import ValidationError

from compression_core.errors import SpecError
from compression_core.methods.lowrank.spec import LowRankStep
from compression_core.methods.prune.spec import PruneStep
from compression_core.methods.quantize.spec import QuantizeStep
from compression_core.spec import (
    Spec,
    example_names,
    example_spec,
    parse_spec,
    spec_json_schema,
)


def rule(*steps, **extra):
    return {"select": {"name": "*"}, "steps": list(steps), **extra}


def error_locations(payload) -> list[str]:
    with pytest.raises(ValidationError) as info:
        Spec.model_validate(payload)
    return [".".join(map(str, e["loc"])) for e in info.value.errors()]


def test_a_full_spec_validates_and_round_trips():
    payload = {
        "version": 1,
        "rules": [
            rule({"type": "prune", "keep": 10, "scope": "global"}, {"type": "quantize", "k": 4}, name="a"),
            rule({"type": "lowrank", "alpha": 1e-9, "mu": 0.5}, encoding="raw"),
        ],
        "default": {"dtype": "float16"},
    }
    spec = Spec.model_validate(payload)
    assert isinstance(spec.rules[0].steps[0], PruneStep)
    assert isinstance(spec.rules[0].steps[1], QuantizeStep)
    assert isinstance(spec.rules[1].steps[0], LowRankStep)
    again = Spec.model_validate_json(spec.model_dump_json())
    assert again == spec


@pytest.mark.parametrize(
    ("step", "field"),
    [
        ({"type": "quantize", "k": 1}, "rules.0.steps.0.quantize.k"),
        ({"type": "quantize", "k": 65537}, "rules.0.steps.0.quantize.k"),
        ({"type": "prune", "keep": 0}, "rules.0.steps.0.prune.keep"),
        ({"type": "prune", "keep": 2**40 + 1}, "rules.0.steps.0.prune.keep"),
        ({"type": "prune", "sparsity": 1.0}, "rules.0.steps.0.prune.sparsity"),
        ({"type": "prune", "sparsity": -0.1}, "rules.0.steps.0.prune.sparsity"),
        ({"type": "lowrank", "rank": 0}, "rules.0.steps.0.lowrank.rank"),
        ({"type": "lowrank", "energy": 1.5}, "rules.0.steps.0.lowrank.energy"),
        ({"type": "lowrank", "alpha": -1.0}, "rules.0.steps.0.lowrank.alpha"),
        ({"type": "quantize", "k": 4, "init": "random"}, "rules.0.steps.0.quantize.init"),
        ({"type": "quantize", "k": 4, "bogus": 1}, "rules.0.steps.0.quantize.bogus"),
        ({"type": "shrink"}, "rules.0.steps.0"),
    ],
)
def test_bad_values_name_the_field(step, field):
    assert field in error_locations({"rules": [rule(step)]})


@pytest.mark.parametrize(
    ("step", "words"),
    [
        ({"type": "prune", "keep": 3, "sparsity": 0.5}, "exactly one of keep or sparsity"),
        ({"type": "prune"}, "exactly one of keep or sparsity"),
        ({"type": "lowrank", "rank": 3, "energy": 0.9}, "exactly one of rank, energy or alpha"),
    ],
)
def test_exclusive_options_are_explained(step, words):
    with pytest.raises(ValidationError) as info:
        Spec.model_validate({"rules": [rule(step)]})
    assert words in str(info.value)
    assert "rules.0.steps.0" in ".".join(map(str, info.value.errors()[0]["loc"]))


@pytest.mark.parametrize(
    "steps",
    [
        [{"type": "prune", "keep": 3}, {"type": "lowrank", "rank": 2}],
        [{"type": "lowrank", "rank": 2}, {"type": "quantize", "k": 4}],
        [{"type": "quantize", "k": 4}, {"type": "prune", "keep": 3}],
        [{"type": "prune", "keep": 3}, {"type": "prune", "keep": 3}],
    ],
)
def test_disallowed_step_combinations(steps):
    assert "rules.0" in error_locations({"rules": [rule(*steps)]})


def test_prune_and_lowrank_message_says_why():
    with pytest.raises(SpecError, match="prune and lowrank cannot combine"):
        parse_spec(
            json.dumps({"rules": [rule({"type": "prune", "keep": 3}, {"type": "lowrank", "rank": 2})]})
        )


def test_unknown_top_level_and_selector_fields_are_refused():
    assert "colour" in error_locations({"rules": [], "colour": 1})
    locs = error_locations({"rules": [{"select": {"nmae": "x"}, "steps": [{"type": "quantize", "k": 2}]}]})
    assert "rules.0.select.nmae" in locs


def test_parse_spec_turns_errors_into_spec_errors_naming_fields():
    with pytest.raises(SpecError, match=r"rules\.0\.steps\.0\.quantize\.k"):
        parse_spec(json.dumps({"rules": [rule({"type": "quantize", "k": 1})]}))


def test_model_and_data_fields_are_optional_and_typed():
    # typed by the data-aware part (compression_core/training_spec.py); see tests/data for the rest
    spec = Spec.model_validate({"rules": [], "model": {"arch": "lenet5"}, "data": {"builtin": "mnist-5k"}})
    assert spec.model is not None and spec.model.arch == "lenet5" and spec.model.kwargs == {}
    assert spec.data is not None and spec.data.builtin == "mnist-5k"
    assert Spec.model_validate({"rules": []}).model is None
    assert "data.name" in error_locations(
        {"rules": [], "model": {"arch": "lenet5"}, "data": {"name": "mnist"}}
    )


def test_json_schema_exports_every_step_type():
    schema = spec_json_schema()
    text = json.dumps(schema)
    for word in ("PruneStep", "QuantizeStep", "LowRankStep", "Selector", "kmeans++", "huffman"):
        assert word in text
    assert schema["properties"]["rules"]["type"] == "array"


def test_shipped_examples_validate():
    names = example_names()
    assert {
        "deep-compression-lenet300",
        "deep-compression-lenet5",
        "lc-lenet5-prune-conv-quantize-linear",
        "lc-lenet5-prune-conv-lowrank-linear",
        "resnet-prune90-k16",
    } <= set(names)
    from compression_core.methods import registry

    for name in names:  # each does something: rules, or a whole-model method (wquant's have no rules)
        spec = example_spec(name)
        assert spec.rules or registry.present_methods(spec), name
    with pytest.raises(SpecError, match="no example spec"):
        example_spec("nope")
