"""Resumable LC runs: after every finished LC step the run's state goes to `lc-checkpoint.safetensors` in the
job's folder (the shared machinery: compression_core/training/checkpoint.py), and a run that finds a
matching file (same spec, same starting weights) continues at the next step.

The state after step k is everything step k+1 reads: the model's whole state dict (w, biases, buffers), the
compressed weights Δ(Θ_k), the multipliers λ_k and the history so far. The L step draws its mini-batch order
from `seed + step` and builds a fresh optimizer each step (as the LC toolkit does), so a resumed run computes
exactly what an uninterrupted one would; no optimizer or RNG state needs saving.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from compression_core.training.checkpoint import RunCheckpoint, fingerprint

__all__ = ["CHECKPOINT_NAME", "LCCheckpoint", "SavedLC", "fingerprint"]

CHECKPOINT_NAME = "lc-checkpoint.safetensors"


@dataclass
class SavedLC:
    step: int  # the last finished LC step (1-based); the run resumes at step + 1
    model_state: dict[str, torch.Tensor]
    deltas: dict[str, torch.Tensor]
    lambdas: dict[str, torch.Tensor] | None
    history: list[dict[str, Any]]


class LCCheckpoint:
    """The checkpoint file of one LC run in `directory` (created on first save)."""

    def __init__(self, directory: str | Path, fingerprint: str):
        self._file = RunCheckpoint(directory, CHECKPOINT_NAME, fingerprint, what="LC")
        self.path = self._file.path

    def save(
        self,
        step: int,
        model_state: Mapping[str, torch.Tensor],
        deltas: Mapping[str, torch.Tensor],
        lambdas: Mapping[str, torch.Tensor] | None,
        history: list[dict[str, Any]],
    ) -> None:
        self._file.save(
            step,
            {"model": model_state, "delta": deltas, "lambda": lambdas or {}},
            {"multipliers": "1" if lambdas is not None else "0", "history": json.dumps(history)},
        )

    def load(self) -> SavedLC | None:
        """The saved state, or None when there is none or it belongs to another spec / upload."""
        saved = self._file.load()
        if saved is None:
            return None
        return SavedLC(
            step=saved.step,
            model_state=saved.groups.get("model", {}),
            deltas=saved.groups.get("delta", {}),
            lambdas=saved.groups.get("lambda", {}) if saved.meta.get("multipliers") == "1" else None,
            history=json.loads(saved.meta["history"]),
        )

    def clear(self) -> None:
        self._file.clear()
