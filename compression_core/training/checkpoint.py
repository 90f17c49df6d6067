"""Resumable training runs (LC's μ steps, SWS's epochs): after each finished step the run's state goes to one
file in the job's folder, and a run that finds a matching file (same spec, same starting weights) continues
at the next step.

The file is one `.safetensors`: named groups of tensors (`<group>/<name>`: the model's state dict, an
optimizer's moments, RNG states, ...) plus str metadata (the step, a fingerprint, whatever JSON the run
adds). It is written to a temporary name and renamed, so a worker killed mid-write leaves the previous
checkpoint intact; it is our own file, read with safetensors only (nothing unpickled). A file whose
fingerprint differs (another spec or upload) or that cannot be read is ignored and overwritten by the next
save. Each method keeps its own file name, so methods never read each other's state.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "RunCheckpoint",
    "SavedRun",
    "fingerprint",
    "load_optimizer_state",
    "optimizer_state",
]

log = logging.getLogger(__name__)

_RESERVED = ("step", "fingerprint")


@dataclass
class SavedRun:
    step: int  # the last finished step (1-based); the run resumes at step + 1
    groups: dict[str, dict[str, torch.Tensor]]
    meta: dict[str, str] = field(default_factory=dict)


def fingerprint(spec_json: str, state: Mapping[str, torch.Tensor]) -> str:
    """What a checkpoint must match: the spec (its rules, method, model, data) and the uploaded state."""
    digest = hashlib.sha256(spec_json.encode())
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class RunCheckpoint:
    """The checkpoint file `name` of one run in `directory` (created on first save)."""

    def __init__(self, directory: str | Path, name: str, fingerprint: str, *, what: str = "run"):
        self.path = Path(directory) / name
        self.fingerprint = fingerprint
        self.what = what  # for the log: "LC", "SWS"

    def save(
        self, step: int, groups: Mapping[str, Mapping[str, torch.Tensor]], meta: Mapping[str, str]
    ) -> None:
        from safetensors.torch import save_file

        clash = [k for k in meta if k in _RESERVED]
        if clash:
            raise ValueError(f"checkpoint metadata keys {clash} are reserved")
        tensors: dict[str, torch.Tensor] = {}
        for group, values in groups.items():
            for name, value in values.items():
                tensors[f"{group}/{name}"] = value.detach().cpu().contiguous().clone()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        save_file(tensors, str(tmp), metadata={**meta, "step": str(step), "fingerprint": self.fingerprint})
        os.replace(tmp, self.path)
        log.info("%s checkpoint after step %d: %s", self.what, step, self.path)

    def load(self) -> SavedRun | None:
        """The saved state, or None when there is none or it belongs to another spec / upload."""
        if not self.path.is_file():
            return None
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(self.path), framework="pt") as f:
                meta = dict(f.metadata() or {})
                groups: dict[str, dict[str, torch.Tensor]] = {}
                for key in f.keys():  # noqa: SIM118 (safe_open has no __iter__)
                    group, _, name = key.partition("/")
                    groups.setdefault(group, {})[name] = f.get_tensor(key)
            step = int(meta.pop("step"))
        except (SafetensorError, OSError, ValueError, KeyError) as exc:
            log.warning("ignoring unreadable %s checkpoint %s: %s", self.what, self.path, exc)
            return None
        if meta.pop("fingerprint", None) != self.fingerprint:
            log.warning(
                "ignoring %s checkpoint %s: it belongs to another spec or upload", self.what, self.path
            )
            return None
        return SavedRun(step=step, groups=groups, meta=meta)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], str]:
    """An optimizer's state dict as flat tensors (`<param index>.<key>`) plus JSON for the rest."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, json.dumps({"param_groups": sd["param_groups"], "scalars": scalars})


def load_optimizer_state(
    optimizer: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor], rest: str
) -> None:
    """Restore what `optimizer_state` saved into an optimizer built over the same parameters."""
    extra = json.loads(rest)
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        index, _, name = key.partition(".")
        state.setdefault(int(index), {})[name] = value
    for index, values in extra["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": extra["param_groups"]})
