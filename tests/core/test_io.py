import datetime
import os
import pickle
from collections import OrderedDict

import pytest
import torch
from safetensors.torch import save_file

from compression_core.errors import InputError
from compression_core.io import load_state_dict, save_state_dict


def small() -> dict[str, torch.Tensor]:
    return {
        "a.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3),
        "a.bias": torch.ones(2, dtype=torch.float16),
    }


def assert_same(a, b):
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name])


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".bin", ".safetensors"])
def test_round_trip(tmp_path, suffix):
    path = tmp_path / f"m{suffix}"
    save_state_dict(small(), path)
    assert_same(load_state_dict(path), small())
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("key", ["state_dict", "model"])
def test_wrappers_are_unwrapped(tmp_path, key):
    path = tmp_path / "ckpt.pth"
    torch.save({key: OrderedDict(small()), "epoch": 3}, path)
    assert_same(load_state_dict(path), small())


class _Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_code_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"w": torch.ones(2), "x": _Evil(str(marker))}, path)
    with pytest.raises(InputError, match="refused"):
        load_state_dict(path)
    assert not marker.exists()


def test_plain_pickle_with_code_never_runs(tmp_path):
    marker = tmp_path / "pwned2"
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps(_Evil(str(marker))))
    with pytest.raises(InputError):
        load_state_dict(path)
    assert not marker.exists()


def test_truncated_torch_file(tmp_path):
    path = tmp_path / "m.pth"
    save_state_dict(small(), path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(InputError, match="not a readable PyTorch file"):
        load_state_dict(path)


def test_truncated_safetensors_file(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file(small(), str(path))
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(InputError, match="safetensors"):
        load_state_dict(path)


def test_garbage_bytes(tmp_path):
    path = tmp_path / "m.pth"
    path.write_bytes(b"\x00\x01not a model at all" * 10)
    with pytest.raises(InputError):
        load_state_dict(path)


def test_non_tensor_value_is_named(tmp_path):
    path = tmp_path / "m.pth"
    torch.save({"w": torch.ones(2), "note": "hello"}, path)
    with pytest.raises(InputError, match=r"'note' is a str"):
        load_state_dict(path)


def test_empty_dict(tmp_path):
    path = tmp_path / "m.pth"
    torch.save({}, path)
    with pytest.raises(InputError, match="empty"):
        load_state_dict(path)


def test_a_list_is_not_a_state_dict(tmp_path):
    path = tmp_path / "m.pth"
    torch.save([torch.ones(2)], path)
    with pytest.raises(InputError, match="found list"):
        load_state_dict(path)


def test_unknown_extension_and_missing_file(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"x")
    with pytest.raises(InputError, match="unknown extension"):
        load_state_dict(path)
    with pytest.raises(InputError, match="no such file"):
        load_state_dict(tmp_path / "missing.pth")


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(3, 2)


def test_a_pickled_module_is_named_plainly_with_what_to_upload(tmp_path):
    path = tmp_path / "model.pth"
    torch.save(_Net(), path)  # the whole module, not its state dict
    with pytest.raises(InputError) as caught:
        load_state_dict(path)
    message = str(caught.value)
    assert message.startswith("model.pth: this is a pickled module (torch.save(model))")
    assert "upload model.state_dict() instead (safetensors preferred" in message
    assert "\x1b" not in message and "weights_only" not in message  # not torch's text, no ANSI escapes


def test_another_pickled_object_names_the_class_it_refers_to(tmp_path):
    path = tmp_path / "obj.pth"
    torch.save({"w": torch.ones(2), "when": datetime.date(2026, 1, 1)}, path)
    with pytest.raises(InputError) as caught:
        load_state_dict(path)
    message = str(caught.value)
    assert "refused: the file holds objects other than tensors" in message
    assert "it refers to datetime.date" in message and "\x1b" not in message
