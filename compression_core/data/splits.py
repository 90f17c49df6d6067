"""Train / validation / test splits, with the indices each split took from its source arrays.

Hyperparameters (schedules, searches, early stopping, the epoch a run keeps) are chosen on the validation
split; the test split is only reported. The validation split is carved from the training data with a fixed
seed (`VALIDATION_SEED`), so two runs on the same data see the same three splits:

    n_val = round(fraction * n_train_pool), fraction = 0.1 unless the spec's `data.validation` says otherwise;
    order = numpy.random.default_rng(VALIDATION_SEED).permutation(n_train_pool);
    validation = pool[order[:n_val]], train = pool[order[n_val:]]   (in that shuffled order).

A pool smaller than `MIN_POOL_FOR_VALIDATION` samples gets no validation split (there would be nothing left to
train on); metrics.json then says the run had none. An upload may bring its own `x_val` / `y_val` instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from compression_core.errors import InputError

__all__ = [
    "DEFAULT_VALIDATION_FRACTION",
    "DataSplits",
    "MAX_SAMPLES",
    "VALIDATION_SEED",
    "carve_validation",
    "check_pair",
    "make_splits",
    "split_info",
]

VALIDATION_SEED = 1
DEFAULT_VALIDATION_FRACTION = 0.1
MIN_POOL_FOR_VALIDATION = 10
MAX_SAMPLES = 10_000_000


@dataclass
class DataSplits:
    """Training, validation and test sets as float32 features and int64 labels.

    `indices[split]` are the positions each split took from its source: for built-ins carved from one pool
    (mnist-5k, digits) all three index the same pool; where the source ships train and test files apart
    (fashion-mnist, uploads) `train` and `validation` index the training file and `test` the test file
    (`index_spaces` says which)."""

    name: str
    train: TensorDataset
    test: TensorDataset | None
    num_classes: int  # 1 + the largest label seen
    validation: TensorDataset | None = None
    indices: dict[str, np.ndarray] = field(default_factory=dict)
    index_spaces: dict[str, str] = field(default_factory=dict)
    uploaded: bool = False  # the user's data file, not a built-in (see `validation_warning`)
    # False: the upload has `x_*` arrays only; the labels are placeholders (zeros) until the job takes the
    # uploaded model's top-1 predictions as labels (`labels_from`), and results are fidelity to the upload
    labelled: bool = True
    labels_from: str = "data"  # "data", "predictions" (the upload's top-1) or "none"

    @property
    def sizes(self) -> dict[str, int]:
        return {
            "train": len(self.train),
            "validation": len(self.validation) if self.validation is not None else 0,
            "test": len(self.test) if self.test is not None else 0,
        }

    @property
    def eval_split(self) -> str:
        """Which split results are reported on: the test split, else validation, else train."""
        if self.test is not None:
            return "test"
        return "validation" if self.validation is not None else "train"

    @property
    def eval_set(self) -> TensorDataset:
        """The split results are reported on (see `eval_split`; metrics.json names it)."""
        return {"test": self.test, "validation": self.validation, "train": self.train}[  # type: ignore[return-value]
            self.eval_split
        ]

    @property
    def choice_split(self) -> str:
        """Which split choices are made on and training is monitored on: validation, or (where the run has
        none, `data.validation` 0 or a tiny upload) the reported split, which metrics.json then names."""
        return "validation" if self.validation is not None else self.eval_split

    @property
    def choice_set(self) -> TensorDataset:
        """What schedules, searches, early stopping and per-epoch monitoring look at (see `choice_split`)."""
        return self.validation if self.validation is not None else self.eval_set

    @property
    def validation_warning(self) -> str | None:
        """Why the validation numbers may flatter: an upload without x_val has its validation split carved
        from x_train, on which the uploaded model was usually trained (the built-ins' references are
        trained without their validation split, so they need no warning)."""
        if not self.uploaded or self.validation is None or self.index_spaces.get("validation") != "x_train":
            return None
        return (
            f"the validation split ({len(self.validation)} samples) was carved from the uploaded x_train, "
            "which the uploaded model was probably trained on, so the choices made on it (schedules, "
            "epochs, search trials) look better there than on new data; upload held-out x_val/y_val "
            "with the data set"
        )

    def take_labels(self, predict: Callable[[torch.Tensor], torch.Tensor], source: str) -> None:
        """Label every split with `predict(features)` (class indices, e.g. the uploaded model's top-1), for
        data uploaded without labels; `labels_from` records `source`."""
        for split in ("train", "validation", "test"):
            dataset = getattr(self, split)
            if dataset is not None:
                x = dataset.tensors[0]
                setattr(self, split, TensorDataset(x, predict(x).to(torch.int64).reshape(len(x))))
        self.labels_from = source
        self.num_classes = 1 + max(
            int(d.tensors[1].max()) for d in (self.train, self.validation, self.test) if d is not None
        )

    def info(self, split: str) -> dict[str, Any]:
        return split_info(split, self.sizes.get(split, 0))


def split_info(split: str | None, n: int) -> dict[str, Any]:
    """The `split` / `n` pair every evaluation section of metrics.json carries."""
    return {"split": split, "n": n}


def check_pair(name: str, split: str, x: np.ndarray, y: np.ndarray | None) -> None:
    """Dtypes, shapes, sizes and label range of one split (InputError naming the split otherwise); `y` None:
    the split has no labels (fidelity to the upload is reported instead of an error)."""
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise InputError(f"{name}: x_{split} has dtype {x.dtype}; features must be numeric")
    if y is None:
        _check_features(name, split, x)
        return
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
    _check_features(name, split, x)


def _check_features(name: str, split: str, x: np.ndarray) -> None:
    if x.ndim < 2:
        raise InputError(f"{name}: x_{split} has shape {x.shape}; expected (samples, features...)")
    if len(x) == 0:
        raise InputError(f"{name}: the {split} set is empty")
    if len(x) > MAX_SAMPLES:
        raise InputError(f"{name}: the {split} set has {len(x)} samples, more than the limit {MAX_SAMPLES}")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise InputError(f"{name}: x_{split} contains NaN or infinite values")


def carve_validation(pool: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) index arrays from the training pool `pool` (see the module docstring)."""
    n = len(pool)
    n_val = round(fraction * n) if n >= MIN_POOL_FOR_VALIDATION else 0
    order = np.random.default_rng(VALIDATION_SEED).permutation(n)
    return pool[order[n_val:]], pool[order[:n_val]]


def _dataset(x: np.ndarray, y: np.ndarray) -> TensorDataset:
    return TensorDataset(
        torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)),
    )


def make_splits(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray | None,
    x_test: np.ndarray | None,
    y_test: np.ndarray | None,
    *,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    train_pool: np.ndarray | None = None,
    test_pool: np.ndarray | None = None,
    index_spaces: dict[str, str] | None = None,
) -> DataSplits:
    """Check the arrays and build the splits; without `x_val` the validation split is carved from train.

    `train_pool` / `test_pool` are the source indices of the rows of x_train / x_test (default: 0..n-1 of
    their own arrays), so `DataSplits.indices` point into the source the caller read.

    Without `y_train` the data has no labels (`DataSplits.labelled` False): `y_test` and `y_val` must be
    absent too, and every split's labels are zeros until the job replaces them (`with_labels`)."""
    labelled = y_train is not None
    if not labelled and (y_test is not None or y_val is not None):
        raise InputError(f"{name}: y_test or y_val without y_train; give labels for every split or for none")
    check_pair(name, "train", x_train, y_train)
    for split, x, y in (("test", x_test, y_test), ("val", x_val, y_val)):
        if x is not None and (y is not None or not labelled):
            check_pair(name, split, x, y)
            if x.shape[1:] != x_train.shape[1:]:
                raise InputError(
                    f"{name}: x_{split} samples have shape {x.shape[1:]}, x_train {x_train.shape[1:]}"
                )
    if not labelled:  # placeholders, so every split stays a (features, labels) TensorDataset
        y_train = np.zeros(len(x_train), dtype=np.int64)
        y_test = None if x_test is None else np.zeros(len(x_test), dtype=np.int64)
        y_val = None if x_val is None else np.zeros(len(x_val), dtype=np.int64)
    assert y_train is not None
    labels = [y for y in (y_train, y_test, y_val) if y is not None]
    num_classes = int(max(int(y.max()) for y in labels)) + 1 if labelled else 0
    train_pool = np.arange(len(x_train)) if train_pool is None else train_pool
    indices: dict[str, np.ndarray] = {}
    validation: TensorDataset | None
    if x_val is not None and y_val is not None:
        train_x, train_y, validation = x_train, y_train, _dataset(x_val, y_val)
        indices["train"], indices["validation"] = train_pool, np.arange(len(x_val))
    else:
        local = np.arange(len(x_train))
        keep, carved = carve_validation(local, validation_fraction)
        train_x, train_y = x_train[keep], y_train[keep]
        validation = _dataset(x_train[carved], y_train[carved]) if len(carved) else None
        indices["train"], indices["validation"] = train_pool[keep], train_pool[carved]
    test = None
    if x_test is not None and y_test is not None:
        test = _dataset(x_test, y_test)
        indices["test"] = np.arange(len(x_test)) if test_pool is None else test_pool
    return DataSplits(
        name=name,
        train=_dataset(train_x, train_y),
        test=test,
        num_classes=num_classes,
        validation=validation,
        indices=indices,
        index_spaces=index_spaces or {},
        labelled=labelled,
        labels_from="data" if labelled else "none",
    )
