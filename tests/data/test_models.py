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


REGNET = {"arch": "regnet_x_400mf", "kwargs": {"num_classes": 200_000}}  # ~100M params, ~400 MB of fp32


def test_an_architecture_that_fails_on_meta_is_still_sized_before_it_is_built(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Issue 21, item 5: RegNet computes its widths with tensors, so it fails to build on the meta device
    and the byte budget was skipped: it was built for real (+336 MB) under a 256 MiB budget."""
    import pytest

    from compression_core.budget import ENV
    from compression_core.errors import SpecError
    from compression_core.models import build_model
    from tests.reliability.memory import peak_mib, reset_peak

    monkeypatch.setenv(ENV, str(256 << 20))
    before = reset_peak()
    with pytest.raises(SpecError, match="over the byte budget"):
        build_model(REGNET)
    growth = peak_mib() - before
    print(f"regnet_x_400mf with 200,000 classes under a 256 MiB budget: peak RSS growth {growth:.1f} MiB")
    assert growth < 64, growth
    small = build_model({"arch": "regnet_x_400mf", "kwargs": {"num_classes": 10}})
    assert small.fc.out_features == 10 and all(p.device.type == "cpu" for p in small.parameters())


def test_the_teacher_and_load_model_are_sized_too(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import json
    from types import SimpleNamespace

    import pytest
    from safetensors.torch import save_file

    from compression_core.budget import ENV
    from compression_core.deploy.architecture import load_model
    from compression_core.errors import SpecError
    from compression_core.methods.distill.algorithm import load_teacher
    from compression_core.models import ModelSpec, build_model
    from tests.reliability.memory import peak_mib, reset_peak

    monkeypatch.setenv(ENV, str(256 << 20))
    record = {"format": "mcs-architecture", "version": 1, "model": {**REGNET, "input_shape": [3, 32, 32]}}
    (tmp_path / "architecture.json").write_text(json.dumps(record))
    (tmp_path / "model.pth").write_bytes(b"")
    teacher = tmp_path / "teacher.safetensors"
    save_file(build_model({"arch": "lenet5"}).state_dict(), str(teacher))
    before = reset_peak()
    with pytest.raises(SpecError, match="over the byte budget"):
        load_model(tmp_path)
    with pytest.raises(SpecError, match="over the byte budget"):
        load_teacher(SimpleNamespace(teacher=ModelSpec(**REGNET)), teacher)  # type: ignore[arg-type]
    assert peak_mib() - before < 64


def test_an_architecture_that_cannot_be_sized_is_refused(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A constructor that fails on the meta device however it is probed is refused, not built blind."""
    import pytest
    import torch

    import compression_core.models as models
    from compression_core.errors import SpecError

    built: list[int] = []

    def stubborn(width: int = 4) -> torch.nn.Module:
        if torch.empty(1).device.type == "meta":  # only real tensors will do
            raise NotImplementedError("no meta support")
        built.append(width)
        return torch.nn.Linear(width, width)

    monkeypatch.setitem(models.BUILTIN_MODELS, "stubborn", stubborn)
    with pytest.raises(SpecError, match="cannot be sized"):
        models.build_model({"arch": "stubborn"})
    assert built == []
