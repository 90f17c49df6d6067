from __future__ import annotations

import pytest
import torch

from compression_core.errors import Cancelled, SpecError
from compression_core.evaluate import evaluate
from compression_core.methods.quantize.kmeans1d import kmeans1d
from compression_core.models import build_model
from compression_core.records import TensorRecord
from compression_core.training.finetune import (
    RetrainConfig,
    finetune,
    iterative_prune,
    magnitude_prune,
    train_epochs,
)

FAST = RetrainConfig(epochs=2, lr=0.05, batch_size=64)


def _trained_mlp(digits, epochs=8):
    model = build_model({"arch": "mlp", "kwargs": {"sizes": [64, 32, 10]}})
    train_epochs(model, digits.train, RetrainConfig(epochs=epochs, lr=0.05, batch_size=32))
    return model


def _prune_quantize(name, weight, keep, k):
    pruned = magnitude_prune(name, weight, keep)
    assert pruned.values is not None
    result = kmeans1d(pruned.values.numpy(), k, init="linear", iters=30, seed=0)
    return TensorRecord(
        name=name,
        shape=pruned.shape,
        dtype=pruned.dtype,
        positions=pruned.positions,
        codebook=torch.from_numpy(result.codebook).float(),
        indices=torch.from_numpy(result.indices).long(),
        method="prune+quantize",
    )


def test_pruned_weights_stay_exactly_zero(digits):
    model = _trained_mlp(digits, epochs=2)
    record = magnitude_prune("fc1.weight", model.fc1.weight, 400)
    result = finetune(model, [record], digits.train, FAST)
    (new,) = result.records
    assert torch.equal(new.positions, record.positions)
    assert not torch.equal(new.values, record.values)  # the kept values did train
    mask = torch.zeros(model.fc1.weight.numel(), dtype=torch.bool)
    mask[record.positions] = True
    weight = model.fc1.weight.detach().flatten()
    assert torch.count_nonzero(weight[~mask]) == 0
    assert torch.equal(model.fc1.weight.detach(), new.reconstruct())
    assert not torch.nn.utils.parametrize.is_parametrized(model.fc1)  # plain module again


def test_codebooks_keep_sharing_and_at_most_k_values(digits):
    model = _trained_mlp(digits, epochs=2)
    record = _prune_quantize("fc1.weight", model.fc1.weight.detach(), 500, 8)
    (new,) = finetune(model, [record], digits.train, FAST).records
    assert torch.equal(new.indices, record.indices) and torch.equal(new.positions, record.positions)
    assert new.codebook.shape == record.codebook.shape and not torch.equal(new.codebook, record.codebook)
    weight = model.fc1.weight.detach()
    assert len(torch.unique(weight[weight != 0])) <= 8
    assert torch.count_nonzero(weight) <= 500


def test_centroid_gradient_is_the_sum_of_its_weights_gradients():
    # Deep Compression's update: d loss / d c_j = sum of d loss / d w_i over the weights i sharing c_j.
    layer = torch.nn.Linear(4, 2, bias=False)
    record = TensorRecord(
        name="weight",
        shape=(2, 4),
        dtype=torch.float32,
        codebook=torch.tensor([-1.0, 0.5, 2.0]),
        indices=torch.tensor([0, 1, 2, 1, 0, 0, 2, 1]),
        method="quantize",
    )
    x = torch.randn(5, 4)
    dense = record.reconstruct().requires_grad_(True)
    (x @ dense.T).pow(2).sum().backward()
    expected = torch.zeros(3).index_add_(0, record.indices, dense.grad.flatten())
    from compression_core.training.finetune import _Codebook

    torch.nn.utils.parametrize.register_parametrization(layer, "weight", _Codebook(record), unsafe=True)
    layer(x).pow(2).sum().backward()
    assert torch.allclose(layer.parametrizations.weight.original.grad, expected, atol=1e-5)


def test_lowrank_factors_train_with_fixed_shapes(digits):
    model = _trained_mlp(digits, epochs=2)
    w = model.fc1.weight.detach()
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    record = TensorRecord(
        name="fc1.weight",
        shape=tuple(w.shape),
        dtype=w.dtype,
        factors=(u[:, :4] * s[:4], vh[:4].clone()),
        method="lowrank",
    )
    (new,) = finetune(model, [record], digits.train, FAST).records
    assert new.factors[0].shape == (32, 4) and new.factors[1].shape == (4, 64)
    assert not torch.equal(new.factors[0], record.factors[0])
    assert torch.linalg.matrix_rank(model.fc1.weight.detach()) <= 4


def test_short_retrain_on_digits_holds_or_improves_a_pruned_quantized_mlp(digits):
    model = _trained_mlp(digits)
    records = [
        _prune_quantize("fc1.weight", model.fc1.weight.detach(), 300, 4),
        _prune_quantize("fc2.weight", model.fc2.weight.detach(), 80, 4),
    ]
    for record in records:
        getattr(model, record.name.split(".")[0]).weight.data.copy_(record.reconstruct())
    before = evaluate(model, digits.test, timing=False)
    result = finetune(
        model, records, digits.train, RetrainConfig(epochs=3, lr=0.01, batch_size=32), eval_set=digits.test
    )
    after = evaluate(model, digits.test, timing=False)
    assert after.error <= before.error
    assert [h.epoch for h in result.history] == [1, 2, 3]
    assert result.history[-1].validation_error == pytest.approx(after.error)


def test_iterative_prune_reaches_the_target_with_shrinking_support(digits):
    model = _trained_mlp(digits, epochs=2)
    supports = []
    result = iterative_prune(
        model,
        {"fc1.weight": 0.1},
        [0.5, 1.0],
        digits.train,
        RetrainConfig(epochs=1, lr=0.05, batch_size=64),
        on_epoch=lambda stats: supports.append(
            set(torch.nonzero(model.fc1.weight.flatten()).flatten().tolist())
        ),
    )
    (record,) = result.records
    assert record.positions.numel() == round(2048 * 0.1)
    assert torch.count_nonzero(model.fc1.weight) == record.positions.numel()
    assert [h.stage for h in result.history] == ["prune 1/2", "prune 2/2"]
    with pytest.raises(SpecError, match="rising"):
        iterative_prune(model, {"fc1.weight": 0.1}, [1.0, 0.5], digits.train, FAST)


def test_cancel_and_bad_records(digits):
    model = _trained_mlp(digits, epochs=1)
    with pytest.raises(Cancelled):
        finetune(model, [], digits.train, FAST, should_cancel=lambda: True)
    bad = magnitude_prune("fc9.weight", torch.zeros(3, 3), 2)
    with pytest.raises(SpecError, match="names no module"):
        finetune(model, [bad], digits.train, FAST)
