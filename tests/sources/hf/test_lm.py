"""A language model's data: token ids read and checked (headers first at the API), perplexity."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from compression_core.errors import InputError
from compression_core.sources.hf.lm import check_token_file, load_tokens, perplexity


def test_rows_are_cut_from_a_stream_and_checked_against_the_vocabulary(tmp_path: Path) -> None:
    path = tmp_path / "tokens.npz"
    np.savez(path, test=np.arange(1000) % 50, train=np.zeros((3, 10), dtype=np.int32))
    check_token_file(path)
    splits = load_tokens(path, vocab_size=50, max_positions=100)
    assert splits.splits["test"].shape == (10, 100) and splits.splits["train"].dtype == torch.int64
    assert splits.summary()["tokens"] == {"test": 1000, "train": 30}
    with pytest.raises(InputError, match="ids from 0 to 49; the vocabulary has 40"):
        load_tokens(path, vocab_size=40, max_positions=100)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"train": np.zeros(10, dtype=np.int64)}, "`test` required"),
        ({"test": np.zeros(10, dtype=np.int64), "x_train": np.zeros(2)}, "x_train"),
        ({"test": np.zeros(10, dtype=np.float32)}, "integer token ids"),
    ],
)
@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_the_header_check_names_what_is_wrong(
    tmp_path: Path, arrays: dict, message: str, suffix: str
) -> None:
    path = tmp_path / f"tokens{suffix}"
    if suffix == ".npz":
        np.savez(path, **arrays)
    else:
        save_file(arrays, str(path))
    with pytest.raises(InputError, match=message):
        check_token_file(path)


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size() -> None:
    class Uniform(torch.nn.Module):
        def forward(self, input_ids: torch.Tensor) -> object:
            return type("Out", (), {"logits": torch.zeros(*input_ids.shape, 7)})()

    result = perplexity(Uniform(), torch.randint(0, 7, (5, 9)), batch=2)
    assert result["tokens"] == 5 * 8 and math.isclose(result["perplexity"], 7.0, rel_tol=1e-6)
