"""The shared checkpoint file of resumable runs (LC, SWS): groups of tensors plus metadata, keyed on a
fingerprint, unreadable or foreign files ignored, optimizer state restored exactly."""

from __future__ import annotations

import pytest
import torch

from compression_core.training.checkpoint import (
    RunCheckpoint,
    fingerprint,
    load_optimizer_state,
    optimizer_state,
)


def _adam_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> None:
    gen = torch.Generator().manual_seed(len(list(model.parameters())) + steps)
    for _ in range(steps):
        x = torch.randn(8, 4, generator=gen)
        optimizer.zero_grad()
        model(x).pow(2).sum().backward()
        optimizer.step()


def test_saved_groups_and_metadata_come_back(tmp_path):
    key = fingerprint('{"a": 1}', {"w": torch.ones(3)})
    ckpt = RunCheckpoint(tmp_path, "run.safetensors", key)
    ckpt.save(
        2, {"model": {"w": torch.arange(3.0)}, "rng": {"g": torch.Generator().get_state()}}, {"h": "[]"}
    )
    saved = ckpt.load()
    assert saved is not None and saved.step == 2 and saved.meta == {"h": "[]"}
    assert torch.equal(saved.groups["model"]["w"], torch.arange(3.0))
    assert not (tmp_path / "run.safetensors.tmp").exists()  # written to a temporary name, then renamed

    other = fingerprint('{"a": 2}', {"w": torch.ones(3)})
    assert other != key and RunCheckpoint(tmp_path, "run.safetensors", other).load() is None
    assert fingerprint('{"a": 1}', {"w": torch.zeros(3)}) != key  # other weights, other key
    with pytest.raises(ValueError, match="reserved"):
        ckpt.save(3, {}, {"step": "9"})


def test_an_unreadable_file_is_ignored(tmp_path):
    (tmp_path / "run.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken")
    assert RunCheckpoint(tmp_path, "run.safetensors", "x").load() is None


def test_optimizer_state_restores_the_same_next_steps(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    _adam_steps(model, optimizer, 3)
    moments, rest = optimizer_state(optimizer)
    ckpt = RunCheckpoint(tmp_path, "run.safetensors", "k")
    ckpt.save(3, {"model": model.state_dict(), "optimizer": moments}, {"optimizer": rest})

    saved = ckpt.load()
    assert saved is not None
    again = torch.nn.Linear(4, 2)
    again.load_state_dict(saved.groups["model"])
    restored = torch.optim.Adam(again.parameters(), lr=0.01)
    load_optimizer_state(restored, saved.groups["optimizer"], saved.meta["optimizer"])
    fresh = torch.nn.Linear(4, 2)
    fresh.load_state_dict(saved.groups["model"])
    without = torch.optim.Adam(fresh.parameters(), lr=0.01)  # the same weights, Adam's moments lost

    _adam_steps(model, optimizer, 2)
    _adam_steps(again, restored, 2)
    _adam_steps(fresh, without, 2)
    assert torch.equal(model.weight, again.weight) and torch.equal(model.bias, again.bias)
    assert not torch.allclose(model.weight, fresh.weight)
