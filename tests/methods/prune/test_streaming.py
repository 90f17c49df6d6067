"""The two-pass κ split equals the in-memory global ranking, ties included."""

from __future__ import annotations

import pytest
import torch

from compression_core.errors import InputError
from compression_core.methods.prune import streaming as prune_streaming
from compression_core.methods.prune.apply import global_keep_counts
from compression_core.methods.prune.streaming import split_global_keep
from compression_core.streaming.pool import OrderedPool


def _split(tensors: dict[str, torch.Tensor], keep: int, workers: int = 1) -> list[int]:
    with OrderedPool(workers) as pool:
        shares = split_global_keep(list(tensors), keep, tensors.__getitem__, pool.map)
    return [shares[name] for name in tensors]


@pytest.mark.parametrize("seed", range(4))
def test_equals_global_ranking_on_random_tensors(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    tensors = {f"t{i}": torch.randn(50 + 37 * i, generator=generator) * (i + 1) for i in range(5)}
    total = sum(t.numel() for t in tensors.values())
    for keep in (1, 7, total // 10, total // 2, total - 1, total):
        expected = global_keep_counts(list(tensors.values()), keep)
        assert _split(tensors, keep) == expected
        assert sum(expected) == keep


def test_histograms_taken_in_chunks_give_the_same_split(monkeypatch: pytest.MonkeyPatch) -> None:
    """The passes histogram each tensor in chunks (bounded temporaries); chunk edges change nothing."""
    generator = torch.Generator().manual_seed(9)
    tensors = {
        "f": torch.randint(-5, 6, (301,), generator=generator).float() / 3,  # many ties
        "b": torch.randn(17, 19, generator=generator).bfloat16(),
        "g": torch.randn(250, generator=generator),
    }
    total = sum(t.numel() for t in tensors.values())
    monkeypatch.setattr(prune_streaming, "_CHUNK", 7)
    for keep in range(1, total + 1, 11):
        assert _split(tensors, keep, workers=2) == global_keep_counts(list(tensors.values()), keep)


def test_ties_across_tensors_are_taken_in_order() -> None:
    """Few distinct magnitudes (bf16 / quantized weights): the threshold value repeats in every tensor."""
    generator = torch.Generator().manual_seed(1)
    tensors = {f"t{i}": torch.randint(-3, 4, (200,), generator=generator).float() for i in range(4)}
    tensors["bf16"] = torch.randn(300, generator=generator).bfloat16()
    tensors["zeros"] = torch.zeros(40)
    total = sum(t.numel() for t in tensors.values())
    for keep in range(1, total + 1, 13):
        assert _split(tensors, keep, workers=2) == global_keep_counts(list(tensors.values()), keep)


def test_nan_is_refused() -> None:
    with pytest.raises(InputError, match="NaN"):
        _split({"a": torch.tensor([1.0, float("nan")])}, 1)


def test_bfloat16_fast_path_equals_the_float32_ranking() -> None:
    generator = torch.Generator().manual_seed(5)
    tensors = {
        "a": torch.randn(500, generator=generator).bfloat16(),
        "b": (torch.randn(300, generator=generator) * 4).bfloat16(),
        "c": torch.randn(200, generator=generator),  # float32 beside bf16 in one group
        "d": torch.tensor([0.0, -0.0, 1.0, -1.0]).bfloat16(),
    }
    total = sum(t.numel() for t in tensors.values())
    for keep in range(1, total + 1, 7):
        assert _split(tensors, keep) == global_keep_counts(list(tensors.values()), keep)
    with pytest.raises(InputError, match="NaN"):
        _split({"x": torch.tensor([1.0, float("inf")]).bfloat16()}, 1)
