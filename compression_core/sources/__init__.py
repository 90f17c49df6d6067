"""Where a model comes from: one concept (`ModelSource`, `base.py`), one folder or module per kind of input,
and `open_source(path, model_spec)`, the one place that tells them apart.

Built-in kinds: `state_dict` (one `.safetensors`/`.pth` file plus the spec's architecture name) and
`sharded` (a safetensors index, or the folder holding it).

Adding a kind of input (e.g. `onnx`, `hf`) is one folder plus one registration line:

1. `compression_core/sources/<name>/__init__.py` (or `<name>.py`) defines a `ModelSource` subclass and
   exports `SOURCE = SourceKind("<name>", MySource, claims, priority=...)`:
   - `claims(path, model_spec) -> bool`: whether this input is yours, from the path and at most a small
     read (a suffix, `config.json` in a folder, a magic number); kinds are asked from the highest priority
     down (`sharded` is 10, `state_dict` 0 and takes any file left; a Hugging Face folder, which also holds
     an index, needs a priority above 10);
   - the subclass implements `infos` and `load(name)` (tensors by name, dtype and shape from metadata,
     one at a time), `write(out_dir, state_dict)` (the in-memory outputs in the source's own form), and,
     where it can, `module(state_dict)` / `has_module` (the trainable module: what data-aware methods,
     deployment and Torch-Pruning work on), `input_signature()`, `dense_writer(out_dir)` (streamed
     outputs; set `streamable = False` when tensors cannot be compressed one at a time), `label`,
     `input_files()`; the constructor reads nothing (the plan is made before any loading);
2. add `"<name>"` to `BUILTINS` below (its place in the tuple does not matter; `priority` orders them).

Nothing else changes: the pipeline plans from `source.describe()`, `streamable` and `has_module`
(`compression_core/job/plan.py`) and its stages only call the interface. See docs/sources.md.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from compression_core.sources.base import DenseWriter, ModelSource, SourceKind, TensorInfo

__all__ = [
    "BUILTINS",
    "DenseWriter",
    "ModelSource",
    "SourceKind",
    "TensorInfo",
    "kinds",
    "open_source",
    "register",
    "unregister",
]

BUILTINS = ("state_dict", "sharded")  # modules under compression_core/sources/, each exporting SOURCE

_kinds: dict[str, SourceKind] = {}
_state = {"loaded": False}


def _load() -> None:
    if _state["loaded"]:
        return
    _state["loaded"] = True
    for name in BUILTINS:
        register(importlib.import_module(f"compression_core.sources.{name}").SOURCE)


def register(kind: SourceKind) -> None:
    """Add (or replace) a kind of input."""
    _load()
    _kinds[kind.name] = kind


def unregister(name: str) -> None:
    _load()
    _kinds.pop(name, None)


def kinds() -> list[SourceKind]:
    """The registered kinds, in the order they are asked (highest priority first)."""
    _load()
    return sorted(_kinds.values(), key=lambda kind: -kind.priority)


def open_source(path: str | Path, model: Any = None) -> ModelSource:
    """The source of the input at `path`; `model` is the spec's `model` field (architecture name, kwargs,
    input shape) or None. Reads nothing yet: the kind's readers raise InputError when they first read."""
    from compression_core.errors import InputError

    path = Path(path)
    for kind in kinds():
        if kind.claims(path, model):
            return kind.open(path, model)
    raise InputError(f"{path}: not a model input this service reads")
