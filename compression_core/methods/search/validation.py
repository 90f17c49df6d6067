"""The validation split a search chooses on: held out of the training data, never the test split.

Until data sets carry their own validation split, it is carved here: a fixed-seed random `fraction` of the
training split (the same samples in every trial of a search, so trials are comparable). Trials retrain on
the rest. To switch to a data set's own split, change `split_validation` only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import TensorDataset

from compression_core.data import DataSplits

__all__ = ["TrialData", "split_validation"]


@dataclass
class TrialData:
    splits: DataSplits  # train = the training split without the validation samples; test unchanged
    validation: TensorDataset
    fraction: float
    seed: int


def split_validation(splits: DataSplits, fraction: float, seed: int) -> TrialData:
    x, y = splits.train.tensors
    n = len(y)
    count = min(n - 1, max(1, round(fraction * n)))
    order = torch.from_numpy(np.random.default_rng(seed).permutation(n))
    held, kept = order[:count].sort().values, order[count:].sort().values
    train = TensorDataset(x[kept], y[kept])
    validation = TensorDataset(x[held], y[held])
    trimmed = DataSplits(name=splits.name, train=train, test=splits.test, num_classes=splits.num_classes)
    return TrialData(trimmed, validation, fraction, seed)
