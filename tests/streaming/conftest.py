"""Small sharded checkpoints in the Hugging Face layout, written the way `transformers` writes them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

INDEX = "model.safetensors.index.json"


def write_sharded(folder: Path, state: Mapping[str, torch.Tensor], shards: int) -> Path:
    """`model-0000i-of-0000N.safetensors` + the index; tensors dealt to shards in name order."""
    folder.mkdir(parents=True, exist_ok=True)
    names = list(state)
    per = -(-len(names) // shards)
    weight_map = {}
    total = 0
    for i in range(shards):
        part = names[i * per : (i + 1) * per]
        file = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_file({n: state[n] for n in part}, str(folder / file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, file))
        total += sum(state[n].numel() * state[n].element_size() for n in part)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / INDEX).write_text(json.dumps(index, indent=2))
    return folder / INDEX


def transformer_like(seed: int = 0, dtype: torch.dtype = torch.bfloat16) -> dict[str, torch.Tensor]:
    """A few transformer-shaped blocks: bf16 matrices (with many exact ties, as bf16 has), fp32 norms."""
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {"model.embed_tokens.weight": torch.randn(64, 32, generator=generator)}
    for block in range(3):
        prefix = f"model.layers.{block}"
        state[f"{prefix}.self_attn.q_proj.weight"] = torch.randn(32, 32, generator=generator).to(dtype)
        state[f"{prefix}.mlp.up_proj.weight"] = torch.randn(48, 32, generator=generator).to(dtype)
        state[f"{prefix}.mlp.down_proj.weight"] = (torch.randn(32, 48, generator=generator) * 0.5).to(dtype)
        state[f"{prefix}.input_layernorm.weight"] = torch.ones(32)
    state["lm_head.weight"] = torch.randn(64, 32, generator=generator).half()
    return state


@pytest.fixture
def sharded(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    state = transformer_like()
    return write_sharded(tmp_path / "ckpt", state, shards=3), state
