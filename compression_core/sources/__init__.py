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
     an index, needs a priority above 10); `check(path)` (optional): what the API checks at `POST /jobs`
     from metadata alone, before anything is queued;
   - the subclass implements `infos` and `load(name)` (tensors by name, dtype and shape from metadata,
     one at a time), `write(out_dir, state_dict)` (the in-memory outputs in the source's own form), and,
     where it can, `module(state_dict)` / `has_module` (the trainable module: what data-aware methods,
     deployment and Torch-Pruning work on), `input_signature()`, `architecture()` (with
     `SourceKind(rebuild=...)`: how `load_model(out_dir)` rebuilds it without the upload),
     `dense_writer(out_dir)` (streamed outputs; set `streamable = False` when tensors cannot be compressed
     one at a time), `label`, `input_files()`; the constructor reads nothing (the plan is made before any
     loading);
2. add `"<name>"` to `BUILTINS` below (its place in the tuple does not matter; `priority` orders them).

Nothing else changes: the pipeline plans from `source.describe()`, `streamable` and `has_module`
(`compression_core/job/plan.py`) and its stages only call the interface. See docs/sources.md.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compression_core.sources.base import DenseWriter, ModelSource, SourceKind, TensorInfo

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "BUILTINS",
    "DenseWriter",
    "ModelSource",
    "SourceKind",
    "TensorInfo",
    "check_data_upload",
    "check_upload",
    "kind_of",
    "kinds",
    "open_source",
    "rebuild",
    "register",
    "unregister",
]

BUILTINS = (
    "state_dict",
    "sharded",
    "onnx",
    "hf",
)  # modules under compression_core/sources/, each exporting SOURCE

_kinds: dict[str, SourceKind] = {}
_state = {"loaded": False}
_loading = threading.RLock()  # the API asks from many threads at once: none may see a half-filled registry


def _load() -> None:
    if _state["loaded"]:
        return
    with _loading:
        if _state["loaded"]:
            return
        for name in BUILTINS:
            kind = importlib.import_module(f"compression_core.sources.{name}").SOURCE
            _kinds.setdefault(kind.name, kind)
        _state["loaded"] = True  # only once every built-in is in


def register(kind: SourceKind) -> None:
    """Add (or replace) a kind of input."""
    _load()
    with _loading:
        _kinds[kind.name] = kind


def unregister(name: str) -> None:
    _load()
    _kinds.pop(name, None)


def kinds() -> list[SourceKind]:
    """The registered kinds, in the order they are asked (highest priority first)."""
    _load()
    return sorted(_kinds.values(), key=lambda kind: -kind.priority)


def kind_of(path: Path, model: Any) -> SourceKind:
    """The registered kind that claims the input at `path` (InputError when none does); reads nothing."""
    from compression_core.errors import InputError

    for kind in kinds():
        if kind.claims(path, model):
            return kind
    raise InputError(f"{path}: not a model input this service reads")


def open_source(path: str | Path, model: Any = None) -> ModelSource:
    """The source of the input at `path`; `model` is the spec's `model` field (architecture name, kwargs,
    input shape) or None. Reads nothing yet: the kind's readers raise InputError when they first read."""
    path = Path(path)
    return kind_of(path, model).open(path, model)


def check_upload(path: str | Path, model: Any = None) -> None:
    """The API's check of an uploaded model input (`SourceKind.check`): metadata only; InputError."""
    path = Path(path)
    kind = kind_of(path, model)
    if kind.check is not None:
        kind.check(path)
        return
    with kind.open(path, model) as source:
        source.infos  # noqa: B018 - listing the tensors reads and checks the metadata


def check_data_upload(model_path: str | Path, model: Any, data_path: str | Path) -> None:
    """The API's check of the data uploaded for the model at `model_path` (`SourceKind.check_data`), from
    headers alone; InputError. Kinds without the hook: nothing (the worker checks when it loads)."""
    kind = kind_of(Path(model_path), model)
    if kind.check_data is not None:
        kind.check_data(Path(data_path), Path(model_path))


def rebuild(model: Mapping[str, Any], out_dir: Path) -> nn.Module:
    """The unpruned module an architecture.json `model` entry with a `source` describes (`load_model`)."""
    from compression_core.errors import InputError

    _load()
    kind = _kinds.get(str(model.get("source")))
    if kind is None or kind.rebuild is None:
        raise InputError(f"architecture.json: no installed model source rebuilds {model.get('source')!r}")
    return kind.rebuild(model, out_dir)
