"""The per-tensor steps apply to a Hugging Face model's linear layers as to any tensor (issue 23): k-means
sharing and low rank on the tiny Llama, with perplexity measured before and after on the test token ids, and
that figure the perplexity of what model.bin decodes to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from compression_core.format import decode_state_dict
from compression_core.job.pipeline import compress_file
from compression_core.spec.parse import parse_spec


def test_kmeans_and_low_rank_on_a_language_models_linears(
    tiny_lm: dict, tmp_path: Path, one_thread: None
) -> None:
    pytest.importorskip("transformers")
    from compression_core.sources.hf import HFSource
    from compression_core.sources.hf.lm import load_tokens, perplexity

    spec = {
        "model": {"hf": True},
        "data": {"upload": True},
        "outputs": {"dense": False},
        "rules": [
            {
                "select": {"name": "model.layers.*.self_attn.*.weight"},
                "steps": [{"type": "quantize", "k": 16}],
            },
            {"select": {"name": "model.layers.*.mlp.*.weight"}, "steps": [{"type": "lowrank", "rank": 8}]},
        ],
    }
    metrics = compress_file(
        tiny_lm["folder"], parse_spec(json.dumps(spec)), tmp_path / "out", data_path=tiny_lm["tokens"]
    )
    state = decode_state_dict((tmp_path / "out" / "model.bin").read_bytes())
    entries = {e["name"]: e for e in metrics["tensors"]}
    attention = [n for n in state if ".self_attn." in n and n.endswith(".weight")]
    mlp = [n for n in state if ".mlp." in n and n.endswith(".weight")]
    assert attention and mlp
    for name in attention:
        assert entries[name]["method"] == "quantize" and state[name].unique().numel() <= 16, name
    for name in mlp:
        assert entries[name]["method"] == "lowrank", name
        singular = torch.linalg.svdvals(state[name].double())  # float32 factors: rounding beyond rank 8
        assert float(singular[8] / singular[0]) < 1e-5, name
    assert metrics["totals"]["ratio"] > 1
    before, after = metrics["evaluation"]["before"], metrics["evaluation"]["after"]
    assert after["tokens"] == before["tokens"] > 0
    with HFSource(tiny_lm["folder"]) as source:
        rows = load_tokens(tiny_lm["tokens"], 256, 256).splits["test"]
        measured = perplexity(source.module(state), rows)["perplexity"]
    assert measured == pytest.approx(after["perplexity"], rel=1e-4)
