import pytest
import torch

from compression_core.errors import SpecError
from compression_core.select import infer_kind, is_bias_or_norm, select_tensors
from compression_core.spec import Kind, Spec

SD = {
    "embed.weight": torch.zeros(10, 4),
    "conv.weight": torch.zeros(4, 3, 3, 3),
    "bn1.weight": torch.zeros(4),
    "bn1.running_mean": torch.zeros(4),
    "bn1.num_batches_tracked": torch.tensor(3),
    "fc.weight": torch.zeros(5, 4),
    "fc.bias": torch.zeros(5),
    "layer_norm.weight": torch.zeros(5, 5),
}


def spec(*rules):
    return Spec.model_validate({"rules": list(rules)})


def rule(select, name=None):
    return {"name": name, "select": select, "steps": [{"type": "quantize", "k": 2}]}


def test_kinds_are_inferred_from_shape_and_name():
    assert infer_kind("embed.weight", SD["embed.weight"]) is Kind.embedding
    assert infer_kind("conv.weight", SD["conv.weight"]) is Kind.conv
    assert infer_kind("fc.weight", SD["fc.weight"]) is Kind.linear
    assert infer_kind("fc.bias", SD["fc.bias"]) is None


def test_bias_and_norm_detection():
    assert is_bias_or_norm("fc.bias", SD["fc.bias"])
    assert is_bias_or_norm("bn1.weight", SD["bn1.weight"])
    assert is_bias_or_norm("layer_norm.weight", SD["layer_norm.weight"])
    assert not is_bias_or_norm("fc.weight", SD["fc.weight"])


def test_wildcard_skips_bias_norm_and_integer_buffers():
    chosen = select_tensors(SD, spec(rule({"name": "*"})))
    assert set(chosen) == {"embed.weight", "conv.weight", "fc.weight"}


def test_include_bias_and_norm_and_explicit_names():
    chosen = select_tensors(SD, spec(rule({"name": "*", "include_bias_and_norm": True})))
    assert "fc.bias" in chosen and "bn1.weight" in chosen and "bn1.num_batches_tracked" not in chosen
    assert set(select_tensors(SD, spec(rule({"name": "*.bias"})))) == {"fc.bias"}
    assert set(select_tensors(SD, spec(rule({"name": "bn1.weight"})))) == {"bn1.weight"}


def test_kind_min_numel_and_first_rule_wins():
    chosen = select_tensors(
        SD,
        spec(
            rule({"kind": "conv"}, "convs"),
            rule({"name": ["fc.*", "embed.*"], "min_numel": 21}, "big"),
            rule({"kind": "linear"}, "rest"),
        ),
    )
    assert chosen["conv.weight"].rule.name == "convs"
    assert chosen["embed.weight"].rule.name == "big"
    assert chosen["fc.weight"].rule.name == "rest"


def test_a_rule_that_selects_nothing_is_a_spec_error_naming_it():
    with pytest.raises(SpecError, match=r"rule #1 \(typo\) selects no tensor"):
        select_tensors(SD, spec(rule({"kind": "conv"}), rule({"name": "cnov.*"}, "typo")))
