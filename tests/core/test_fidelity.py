"""Fidelity to the uploaded model (compression_core/fidelity.py): the upload itself scores 0 and 1, a
perturbed copy scores worse, outputs without a class axis have no agreement, and the byte budget bounds the
reference."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from compression_core.errors import InputError
from compression_core.fidelity import class_axis, compare, measure, reference_outputs


def _model(outputs: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, outputs))


def _inputs(n: int = 500) -> torch.Tensor:
    return torch.randn(n, 20, generator=torch.Generator().manual_seed(1))


def test_the_upload_itself_agrees_fully_with_no_error() -> None:
    model, x = _model(), _inputs()
    reference = reference_outputs(model, x, batch_size=64)
    result = measure(model, x, reference, batch_size=100)  # other batch boundaries: the same sums
    assert result.samples == 500 and result.output_shape == [10]
    assert result.relative_output_error == 0.0
    assert result.top1_agreement == 1.0


def test_a_perturbed_model_agrees_less_and_errs_more_the_more_it_is_perturbed() -> None:
    model, x = _model(), _inputs()
    reference = reference_outputs(model, x)
    results = []
    for scale in (0.05, 0.5):
        noisy = copy.deepcopy(model)
        with torch.no_grad():
            for p in noisy.parameters():
                p.add_(scale * torch.randn(p.shape, generator=torch.Generator().manual_seed(2)))
        results.append(measure(noisy, x, reference))
    small, large = results
    assert 0 < small.relative_output_error < large.relative_output_error
    assert large.top1_agreement is not None and small.top1_agreement is not None
    assert large.top1_agreement < small.top1_agreement < 1.0


def test_compare_is_the_formula() -> None:
    reference = torch.tensor([[3.0, 0.0], [0.0, 4.0]])  # norm 5
    outputs = torch.tensor([[3.0, 0.0], [3.0, 4.0]])  # second sample: diff 3, argmax still 1
    result = compare(reference, outputs)
    assert math.isclose(result.relative_output_error, 3 / 5)
    assert result.top1_agreement == 1.0
    flipped = compare(reference, torch.tensor([[0.0, 3.0], [0.0, 4.0]]))
    assert flipped.top1_agreement == 0.5


def test_outputs_without_a_class_axis_have_no_agreement_and_per_position_agreement_otherwise() -> None:
    regression = compare(torch.ones(4, 1), torch.ones(4, 1) * 1.1)
    assert regression.top1_agreement is None and math.isclose(
        regression.relative_output_error, 0.1, rel_tol=1e-6
    )
    assert not class_axis([1]) and not class_axis([]) and class_axis([3, 8, 8])
    reference = torch.zeros(2, 3, 2, 2)
    reference[:, 0] = 1.0  # class 0 wins at every position
    outputs = reference.clone()
    outputs[0, 2, 0, 0] = 5.0  # one of eight positions now says class 2
    assert compare(reference, outputs).top1_agreement == 7 / 8


def test_zero_reference_is_zero_error_when_matched_and_infinite_otherwise() -> None:
    assert compare(torch.zeros(3, 2), torch.zeros(3, 2)).relative_output_error == 0.0
    assert compare(torch.zeros(3, 2), torch.ones(3, 2)).relative_output_error == math.inf


def test_reference_outputs_are_bounded_by_the_byte_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCS_MAX_DECODE_BYTES", str(4 * 10 * 499))  # one sample short of 500 x 10 float32
    with pytest.raises(InputError, match="byte budget"):
        reference_outputs(_model(), _inputs())


def test_mismatched_lengths_are_refused() -> None:
    model, x = _model(), _inputs(10)
    with pytest.raises(ValueError, match="10 inputs against 9"):
        measure(model, x, reference_outputs(model, x)[:9])
