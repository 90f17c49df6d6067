"""`retrain` on a Hugging Face causal LM (issue 23): magnitude pruning of the MLP linears, then retraining
with the compressed structure held on the causal LM loss over the `train` token ids; perplexity on the test
split, measured on what model.bin decodes to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from compression_core.spec.parse import parse_spec

pytest.importorskip("transformers")

PRUNE = [{"select": {"name": "model.layers.*.mlp.*.weight"}, "steps": [{"type": "prune", "sparsity": 0.8}]}]
FINETUNE = {"epochs": 4, "optimizer": "adam", "lr": 0.001, "batch_size": 8}


def _spec(**extra: object) -> dict:
    return {
        "model": {"hf": True},
        "data": {"upload": True},
        "outputs": {"dense": False},
        "rules": PRUNE,
        **extra,
    }


def test_retraining_after_pruning_lowers_the_test_perplexity_and_keeps_the_zeros(
    tiny_lm: dict, tmp_path: Path, one_thread: None
) -> None:
    from compression_core.format import decode_state_dict
    from compression_core.job.pipeline import compress_file
    from compression_core.sources.hf import HFSource
    from compression_core.sources.hf.lm import load_tokens, perplexity

    pruned = compress_file(
        tiny_lm["folder"], parse_spec(json.dumps(_spec())), tmp_path / "pruned", data_path=tiny_lm["tokens"]
    )
    retrained = compress_file(
        tiny_lm["folder"],
        parse_spec(json.dumps(_spec(retrain={"finetune": FINETUNE}))),
        tmp_path / "retrained",
        data_path=tiny_lm["tokens"],
    )
    before = retrained["evaluation"]["before"]["perplexity"]
    assert pruned["evaluation"]["before"]["perplexity"] == before
    after_prune, after_retrain = (m["evaluation"]["after"] for m in (pruned, retrained))
    assert after_prune["tokens"] == after_retrain["tokens"] == 128 * 63 and after_retrain["split"] == "test"
    assert after_prune["perplexity"] > before  # 80% of the MLP weights gone: measurably worse
    assert after_retrain["perplexity"] < after_prune["perplexity"] - 0.3, (after_prune, after_retrain)
    history = retrained["training"]["history"]
    assert [h["stage"] for h in history] == ["finetune"] * 4 and history[-1]["train_loss"] < history[0][
        "train_loss"
    ]
    # model.bin decodes to the retrained model: the same perplexity, and exactly the pruned support
    state = decode_state_dict((tmp_path / "retrained" / "model.bin").read_bytes())
    name = "model.layers.0.mlp.up_proj.weight"
    assert (state[name] == 0).float().mean().item() == pytest.approx(0.8, abs=0.01)
    with HFSource(tiny_lm["folder"]) as source:
        model = source.module(state)
        rows = load_tokens(tiny_lm["tokens"], 256, 256).splits["test"]
        assert perplexity(model, rows)["perplexity"] == pytest.approx(after_retrain["perplexity"], rel=1e-4)
    assert torch.equal(
        state[name] == 0,
        decode_state_dict((tmp_path / "pruned" / "model.bin").read_bytes())[name] == 0,
    )  # the retraining held the mask the pruning chose


def test_iterative_prune_retrain_of_a_language_model(tiny_lm: dict, tmp_path: Path, one_thread: None) -> None:
    from compression_core.format import decode_state_dict
    from compression_core.job.pipeline import compress_file

    retrain = {"prune_schedule": [0.5, 1.0], "prune": {**FINETUNE, "epochs": 2}}
    metrics = compress_file(
        tiny_lm["folder"],
        parse_spec(json.dumps(_spec(retrain=retrain))),
        tmp_path / "out",
        data_path=tiny_lm["tokens"],
    )
    stages = [h["stage"] for h in metrics["training"]["history"]]
    assert stages == ["prune-retrain 1/2"] * 2 + ["prune-retrain 2/2"] * 2
    state = decode_state_dict((tmp_path / "out" / "model.bin").read_bytes())
    assert (state["model.layers.1.mlp.down_proj.weight"] == 0).float().mean().item() == pytest.approx(
        0.8, abs=0.01
    )
    assert metrics["evaluation"]["after"]["tokens"] == 128 * 63


def test_retraining_a_language_model_needs_train_token_ids(tiny_lm: dict, tmp_path: Path) -> None:
    import numpy as np

    from compression_core.errors import InputError
    from compression_core.job.pipeline import compress_file

    only_test = tmp_path / "test-only.npz"
    np.savez(only_test, test=np.load(tiny_lm["tokens"])["test"][:4])
    with pytest.raises(InputError, match="`train` token ids"):
        compress_file(
            tiny_lm["folder"],
            parse_spec(json.dumps(_spec(retrain={"finetune": FINETUNE}))),
            tmp_path / "out",
            data_path=only_test,
        )
