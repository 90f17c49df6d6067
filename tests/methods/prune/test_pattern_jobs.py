"""2:4 pruning through the job pipeline: a built-in CNN (LeNet-5 on the digits, upscaled to 28x28) and the
tiny Hugging Face LM, with iterative prune-retrain and finetuning. The model holds the pattern after every
round of retraining (3 of 4 at half the schedule, 2 of 4 at its end); model.bin and metrics.json say so."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from compression_core.format import decode_state_dict
from compression_core.job.pipeline import compress_file
from compression_core.methods.retrain import run as retrain_run
from compression_core.spec.parse import parse_spec

PATTERN = {"type": "prune", "pattern": "2:4"}


def most_kept_per_group(weight: torch.Tensor, m: int = 4) -> int:
    """The most nonzeros in any group of `m` consecutive weights along the flattened input dimension."""
    rows = weight.detach().reshape(weight.shape[0], -1)
    rows = F.pad(rows, (0, (-rows.shape[1]) % m))
    return int((rows != 0).reshape(-1, m).sum(dim=1).max())


def watch_rounds(monkeypatch: pytest.MonkeyPatch, names: list[str]) -> list[tuple[str, dict[str, int]]]:
    """Record, after each retraining round of `retrain` (the real `finetune`), the stage and the most
    nonzeros per group of 4 of each named weight the model then holds."""
    rounds: list[tuple[str, dict[str, int]]] = []
    real: Callable[..., object] = retrain_run.finetune

    def watched(model: torch.nn.Module, *args: object, **kwargs: object) -> object:
        result = real(model, *args, **kwargs)
        state = model.state_dict()
        rounds.append((str(kwargs["stage"]), {name: most_kept_per_group(state[name]) for name in names}))
        return result

    monkeypatch.setattr(retrain_run, "finetune", watched)
    return rounds


def _lenet5_job(digits, tmp_path: Path) -> tuple[Path, Path]:
    torch.manual_seed(0)
    from compression_core.models import build_model

    model_path = tmp_path / "lenet5.safetensors"
    save_file(build_model({"arch": "lenet5"}).state_dict(), str(model_path))

    def images(x: torch.Tensor) -> np.ndarray:
        return F.interpolate(x.reshape(-1, 1, 8, 8), size=(28, 28), mode="bilinear").numpy()

    (x_train, y_train), (x_test, y_test) = digits.train.tensors, digits.test.tensors
    data_path = tmp_path / "digits28.npz"
    np.savez(
        data_path,
        x_train=images(x_train[:1000]),
        y_train=y_train[:1000].numpy(),
        x_val=images(x_train[1000:]),
        y_val=y_train[1000:].numpy(),
        x_test=images(x_test),
        y_test=y_test.numpy(),
    )
    return model_path, data_path


def test_two_of_four_on_a_cnn_is_held_through_prune_retrain_and_finetune(
    digits, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    model_path, data_path = _lenet5_job(digits, tmp_path)
    names = ["conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"]
    rounds = watch_rounds(monkeypatch, names)
    train = {"epochs": 1, "lr": 0.05, "batch_size": 64}
    spec = {
        "model": {"arch": "lenet5"},
        "data": {"upload": True},
        "rules": [
            {"select": {"name": "conv*.weight"}, "steps": [PATTERN]},
            {"select": {"name": "fc*.weight"}, "steps": [PATTERN, {"type": "quantize", "k": 16}]},
        ],
        "retrain": {"prune_schedule": [0.5, 1.0], "prune": train, "finetune": train},
    }
    metrics = compress_file(model_path, parse_spec(json.dumps(spec)), tmp_path / "out", data_path=data_path)

    assert [stage for stage, _ in rounds] == ["prune-retrain 1/2", "prune-retrain 2/2", "finetune"]
    assert rounds[0][1] == dict.fromkeys(names, 3)  # half way: 3 of every 4 (conv1's rows of 25 end in 1)
    assert rounds[1][1] == rounds[2][1] == dict.fromkeys(names, 2)
    state = decode_state_dict((tmp_path / "out" / "model.bin").read_bytes())
    entries = {e["name"]: e for e in metrics["tensors"]}
    for name in names:
        assert most_kept_per_group(state[name]) == 2
        assert entries[name]["stats"]["pattern"] == "2:4"
    # conv1: rows of 25 = six groups of 4 (2 kept) and one of 1 (kept); the others divide by 4
    assert entries["conv1.weight"]["kept"] == 20 * 13
    assert entries["fc1.weight"]["kept"] == 500 * 400 and entries["fc1.weight"]["method"] == "prune+quantize"
    assert entries["fc1.weight"]["stats"]["sparsity"] == pytest.approx(0.5)
    after = metrics["evaluation"]["after"]
    assert after["split"] == "test" and after["n"] == 360


def test_two_of_four_on_a_language_model_is_held_through_retraining(
    tiny_lm: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    pytest.importorskip("transformers")
    from compression_core.sources.hf import HFSource
    from compression_core.sources.hf.lm import load_tokens, perplexity

    names = [f"model.layers.{i}.{part}.weight" for i in (0, 1) for part in ("mlp.up_proj", "mlp.down_proj")]
    rounds = watch_rounds(monkeypatch, names)
    train = {"epochs": 1, "optimizer": "adam", "lr": 0.003, "batch_size": 8}
    spec = {
        "model": {"hf": True},
        "data": {"upload": True},
        "outputs": {"dense": False},
        "rules": [{"select": {"name": "model.layers.*.mlp.*.weight"}, "steps": [PATTERN]}],
        "retrain": {"prune_schedule": [0.5, 1.0], "prune": train, "finetune": train},
    }
    metrics = compress_file(
        tiny_lm["folder"], parse_spec(json.dumps(spec)), tmp_path / "out", data_path=tiny_lm["tokens"]
    )
    assert [stage for stage, _ in rounds] == ["prune-retrain 1/2", "prune-retrain 2/2", "finetune"]
    assert rounds[0][1] == dict.fromkeys(names, 3) and rounds[2][1] == dict.fromkeys(names, 2)
    state = decode_state_dict((tmp_path / "out" / "model.bin").read_bytes())
    entries = {e["name"]: e for e in metrics["tensors"]}
    for name in names:
        assert most_kept_per_group(state[name]) == 2 and entries[name]["stats"]["pattern"] == "2:4"
        assert entries[name]["kept"] == state[name].numel() // 2
    assert entries["model.layers.0.self_attn.q_proj.weight"]["method"] == "dense"
    after = metrics["evaluation"]["after"]
    with HFSource(tiny_lm["folder"]) as source:  # what model.bin decodes to gives the reported perplexity
        rows = load_tokens(tiny_lm["tokens"], 256, 256).splits["test"]
        measured = perplexity(source.module(state), rows)["perplexity"]
    assert measured == pytest.approx(after["perplexity"], rel=1e-4)
    assert after["perplexity"] < metrics["evaluation"]["before"]["perplexity"] * 3  # retrained, not broken
