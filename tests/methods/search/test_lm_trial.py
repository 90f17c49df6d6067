"""The validation token ids a search on a language model chooses on (`lm_trial.carve_tokens`)."""

from __future__ import annotations

import numpy as np
import pytest

from compression_core.errors import InputError
from compression_core.methods.search.lm_trial import carve_tokens
from compression_core.methods.search.spec import Holdout


def test_the_uploads_own_validation_ids_are_used_as_they_are() -> None:
    arrays = {
        "train": np.arange(40).reshape(4, 10),
        "validation": np.ones((2, 10)),
        "test": np.zeros((2, 10)),
    }
    carved, where = carve_tokens(arrays, Holdout(), "t.npz")
    assert carved.keys() == arrays.keys() and all(carved[k] is arrays[k] for k in arrays)
    assert "upload's `validation`" in where


def test_rows_are_held_out_of_train_with_the_seed_and_not_trained_on() -> None:
    train = np.arange(100).reshape(10, 10)
    carved, where = carve_tokens({"train": train, "test": train[:1]}, Holdout(fraction=0.3, seed=4), "t.npz")
    assert carved["validation"].shape == (3, 10) and carved["train"].shape == (7, 10)
    rows = {tuple(r) for r in carved["validation"]} | {tuple(r) for r in carved["train"]}
    assert len(rows) == 10  # disjoint, and every row is in one of them
    again, _ = carve_tokens({"train": train, "test": train[:1]}, Holdout(fraction=0.3, seed=4), "t.npz")
    assert np.array_equal(again["validation"], carved["validation"])  # the same rows for every trial
    assert "3 of the 10 `train` rows (seed 4)" in where


def test_a_1d_train_gives_its_last_share_and_no_train_is_refused() -> None:
    carved, _ = carve_tokens(
        {"train": np.arange(1000), "test": np.arange(10)}, Holdout(fraction=0.2), "t.npz"
    )
    assert np.array_equal(carved["validation"], np.arange(800, 1000))
    assert np.array_equal(carved["train"], np.arange(800))
    with pytest.raises(InputError, match="validation token ids"):
        carve_tokens({"test": np.arange(10)}, Holdout(), "t.npz")
