"""The deployment fields of the spec: what needs a model or data, and the export default."""

from __future__ import annotations

import json

import pytest

from compression_core.errors import SpecError
from compression_core.spec import parse_spec

MODEL = {"arch": "lenet5"}
STRUCTURED = {"select": {"name": "conv*"}, "steps": [{"type": "structured", "sparsity": 0.5}]}


def _parse(**fields: object) -> object:
    return parse_spec(json.dumps(fields))


def test_export_defaults_to_onnx_with_a_model_and_int8_implies_it():
    assert _parse(model=MODEL).export_formats == ["onnx"]
    assert _parse(model=MODEL, export=[]).export_formats == []
    assert _parse(model=MODEL, export=[], data={"builtin": "digits"}, int8={}).export_formats == ["onnx"]
    assert _parse(rules=[STRUCTURED]).export_formats == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"int8": {}}, "int8: static int8 needs `model`"),
        ({"model": MODEL, "int8": {}}, "and `data` \\(to calibrate\\)"),
        ({"export": ["onnx"]}, "export: exporting needs `model`"),
        (
            {"rules": [{**STRUCTURED, "steps": [{"type": "structured", "sparsity": 0.5, "round_to": 8}]}]},
            "need `model`",
        ),
        (
            {
                "model": MODEL,
                "rules": [
                    {**STRUCTURED, "steps": [{"type": "structured", "sparsity": 0.5, "importance": "taylor"}]}
                ],
            },
            "taylor importance needs `data`",
        ),
        (
            {
                "model": MODEL,
                "rules": [{**STRUCTURED, "steps": [{"type": "structured", "sparsity": 0.5, "dim": 1}]}],
            },
            "dim 0",
        ),
        (
            {"model": MODEL, "data": {"builtin": "digits"}, "int8": {"calibration_samples": 0}},
            "calibration_samples",
        ),
        ({"model": {**MODEL, "input_shape": [0, 28]}}, "input_shape"),
    ],
)
def test_what_the_deployment_fields_need_is_checked_with_the_spec(fields, message):
    with pytest.raises(SpecError, match=message):
        _parse(**fields)
