from __future__ import annotations

import pytest
import torch

from compression_core.errors import InputError, SpecError
from compression_core.evaluate import evaluate
from compression_core.models import (
    TRUST_EXPORTED_ENV,
    available_architectures,
    build_model,
    load_exported_program,
    load_into,
)


@pytest.mark.parametrize(
    ("spec", "input_shape", "weights"),
    [
        ({"arch": "lenet300"}, (6, 784), {"fc1.weight": 235200, "fc2.weight": 30000, "fc3.weight": 1000}),
        (
            {"arch": "lenet5"},
            (6, 1, 28, 28),
            {"conv1.weight": 500, "conv2.weight": 25000, "fc1.weight": 400000, "fc2.weight": 5000},
        ),
        (
            {"arch": "mlp", "kwargs": {"sizes": [64, 32, 10]}},
            (6, 64),
            {"fc1.weight": 2048, "fc2.weight": 320},
        ),
        ({"arch": "resnet18", "kwargs": {"num_classes": 10}}, (6, 3, 32, 32), {"fc.weight": 5120}),
    ],
)
def test_architecture_builds_loads_and_evaluates(spec, input_shape, weights):
    model = build_model(spec)
    state = model.state_dict()
    for name, numel in weights.items():
        assert state[name].numel() == numel
    fresh = load_into(build_model(spec), state)
    x = torch.randn(*input_shape)
    y = torch.arange(input_shape[0]) % 10
    fresh.eval()
    model.eval()
    assert torch.equal(fresh(x), model(x))
    result = evaluate(fresh, torch.utils.data.TensorDataset(x, y), timing=False)
    assert result.samples == input_shape[0]
    assert len(result.confusion) == 10


def test_lenet5_takes_flat_mnist_vectors():
    model = build_model({"arch": "lenet5"}).eval()
    x = torch.randn(3, 784)
    assert torch.equal(model(x), model(x.view(3, 1, 28, 28)))


def test_unknown_architecture_and_bad_kwargs_are_spec_errors():
    with pytest.raises(SpecError, match="unknown architecture 'nosuchnet'"):
        build_model({"arch": "nosuchnet"})
    with pytest.raises(SpecError, match="cannot build 'lenet300'"):
        build_model({"arch": "lenet300", "kwargs": {"bogus": 1}})


def test_torchvision_weights_are_never_downloaded():
    model = build_model({"arch": "resnet18", "kwargs": {"num_classes": 3, "weights": "DEFAULT"}})
    assert model.fc.out_features == 3  # built from scratch, weights ignored


def test_registry_lists_the_three_sources():
    names = available_architectures()
    assert names["builtin"] == [
        "lenet300",
        "lenet5",
        "mlp",
        "squeezenet-lenet5",
        "squeezenet-vgg",
        "squeezenet1_1-mnist",
        "vgg-small",
    ]
    assert "squeezenet1_1" in names["torchvision"]
    assert "resnet18" in names["torchvision"]
    assert "fasterrcnn_resnet50_fpn" not in names["torchvision"]  # classifiers only


def test_mismatched_state_dict_lists_missing_unexpected_and_misshaped_keys():
    model = build_model({"arch": "lenet300"})
    state = dict(model.state_dict())
    del state["fc2.bias"]
    state["fc9.weight"] = torch.zeros(3)
    state["fc1.weight"] = torch.zeros(300, 100)
    with pytest.raises(InputError) as info:
        load_into(model, state)
    message = str(info.value)
    assert "missing keys: fc2.bias" in message
    assert "unexpected keys: fc9.weight" in message
    assert "mis-shaped keys: fc1.weight (model (300, 784), file (300, 100))" in message


def test_exported_programs_are_refused_by_default(tmp_path, monkeypatch):
    path = tmp_path / "model.pt2"
    path.write_bytes(b"not even a zip")
    monkeypatch.delenv(TRUST_EXPORTED_ENV, raising=False)
    with pytest.raises(InputError, match="refused because torch.export.load unpickles"):
        load_exported_program(path)
    monkeypatch.setenv(TRUST_EXPORTED_ENV, "1")
    with pytest.raises(InputError, match="not a loadable torch.export program"):
        load_exported_program(path)


def test_a_model_that_cannot_take_the_weights_is_refused_before_it_is_allocated() -> None:
    """Issue 10, item 2: `sizes = [8, 20000000, 3]` allocated 0.9 GB before the shape error."""
    import pytest

    from compression_core.errors import InputError
    from compression_core.models import build_model
    from tests.reliability.memory import peak_mib, reset_peak

    weights = build_model({"arch": "mlp", "kwargs": {"sizes": [8, 4, 3]}}).state_dict()
    before = reset_peak()
    with pytest.raises(InputError, match=r"fc1.weight \(model \(20000000, 8\), file \(4, 8\)\)"):
        build_model({"arch": "mlp", "kwargs": {"sizes": [8, 20_000_000, 3]}}, fits=weights)
    assert peak_mib() - before < 64


def test_a_model_over_the_byte_budget_is_a_spec_error(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from compression_core.budget import ENV
    from compression_core.errors import SpecError
    from compression_core.models import build_model

    monkeypatch.setenv(ENV, str(1 << 20))
    with pytest.raises(SpecError, match="over the byte budget"):
        build_model({"arch": "mlp", "kwargs": {"sizes": [8, 100_000, 3]}})
