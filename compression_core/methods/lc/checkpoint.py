"""Resumable LC runs: after every finished LC step the run's state goes to one file in the job's folder, and a
run that finds a matching file (same spec, same starting weights) continues at the next step.

The state after step k is everything step k+1 reads: the model's whole state dict (w, biases, buffers), the
compressed weights Δ(Θ_k), the multipliers λ_k and the history so far. The L step draws its mini-batch order
from `seed + step` and builds a fresh optimizer each step (as the LC toolkit does), so a resumed run computes
exactly what an uninterrupted one would. The file is one `.safetensors` (tensors plus str metadata: the step,
a fingerprint, the history as JSON) written to a temporary name and renamed, so a worker killed mid-write
leaves the previous checkpoint intact; it is our own file, read with safetensors only (nothing unpickled).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = ["CHECKPOINT_NAME", "LCCheckpoint", "SavedLC", "fingerprint"]

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "lc-checkpoint.safetensors"
_GROUPS = ("model", "delta", "lambda")


@dataclass
class SavedLC:
    step: int  # the last finished LC step (1-based); the run resumes at step + 1
    model_state: dict[str, torch.Tensor]
    deltas: dict[str, torch.Tensor]
    lambdas: dict[str, torch.Tensor] | None
    history: list[dict[str, Any]]


def fingerprint(spec_json: str, state: Mapping[str, torch.Tensor]) -> str:
    """What a checkpoint must match: the spec's rules and LC settings and the uploaded weights."""
    digest = hashlib.sha256(spec_json.encode())
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class LCCheckpoint:
    """The checkpoint file of one LC run in `directory` (created on first save)."""

    def __init__(self, directory: str | Path, fingerprint: str):
        self.path = Path(directory) / CHECKPOINT_NAME
        self.fingerprint = fingerprint

    def save(
        self,
        step: int,
        model_state: Mapping[str, torch.Tensor],
        deltas: Mapping[str, torch.Tensor],
        lambdas: Mapping[str, torch.Tensor] | None,
        history: list[dict[str, Any]],
    ) -> None:
        from safetensors.torch import save_file

        tensors: dict[str, torch.Tensor] = {}
        for group, values in (("model", model_state), ("delta", deltas), ("lambda", lambdas or {})):
            for name, value in values.items():
                tensors[f"{group}/{name}"] = value.detach().cpu().contiguous().clone()
        meta = {
            "step": str(step),
            "fingerprint": self.fingerprint,
            "multipliers": "1" if lambdas is not None else "0",
            "history": json.dumps(history),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, self.path)
        log.info("LC checkpoint after step %d: %s", step, self.path)

    def load(self) -> SavedLC | None:
        """The saved state, or None when there is none or it belongs to another spec / upload."""
        if not self.path.is_file():
            return None
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(self.path), framework="pt") as f:
                meta = f.metadata() or {}
                groups: dict[str, dict[str, torch.Tensor]] = {g: {} for g in _GROUPS}
                for key in f.keys():  # noqa: SIM118 (safe_open has no __iter__)
                    group, _, name = key.partition("/")
                    if group in groups:
                        groups[group][name] = f.get_tensor(key)
        except (SafetensorError, OSError, ValueError) as exc:
            log.warning("ignoring unreadable LC checkpoint %s: %s", self.path, exc)
            return None
        if meta.get("fingerprint") != self.fingerprint:
            log.warning("ignoring LC checkpoint %s: it belongs to another spec or upload", self.path)
            return None
        return SavedLC(
            step=int(meta["step"]),
            model_state=groups["model"],
            deltas=groups["delta"],
            lambdas=groups["lambda"] if meta.get("multipliers") == "1" else None,
            history=json.loads(meta["history"]),
        )

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
