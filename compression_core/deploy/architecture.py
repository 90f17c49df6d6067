"""`architecture.json`: how to rebuild the deployed (possibly smaller) module, and `load_model`.

A physically pruned `model.pth` holds tensors of new shapes, so it no longer loads into the named
architecture. `architecture.json` records what rebuilds it from code already installed, never from the
file: the architecture's name and constructor kwargs (built by `compression_core.models.build_model`), one
sample's input shape (Torch-Pruning traces the model on it), and Torch-Pruning's pruning history, i.e. for
each pruning operation the root layer, whether output or input channels went, and their indices.
`load_model` builds, replays the history and loads `model.pth` strictly.

```json
{"format": "mcs-architecture", "version": 1,
 "model": {"arch": "resnet18", "kwargs": {"num_classes": 10}, "input_shape": [3, 64, 64]},
 "pruning": {"library": "torch-pruning 1.6.0", "history": [["conv1", true, [3, 7]], ...],
             "layers": [{"layer": "conv1", "sparsity": 0.5, "channels": 64, "kept": 32}, ...]},
 "parameters": {"before": 11181642, "after": 2801450}, "weights": "model.pth"}
```
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compression_core.errors import InputError, SpecError
from compression_core.jsonbound import JSONDepthError, loads_bounded

__all__ = [
    "ARCHITECTURE_FILE",
    "FORMAT",
    "architecture_record",
    "build_deployed",
    "load_model",
    "read_architecture",
]

ARCHITECTURE_FILE = "architecture.json"
FORMAT = "mcs-architecture"
VERSION = 1
MAX_DEPTH = 16
MAX_BYTES = 64 * 1024 * 1024  # a pruning history lists indices; even ResNet-152's stays far below this


def architecture_record(
    model_spec: Mapping[str, Any],
    input_shape: Sequence[int],
    history: Sequence[Sequence[Any]],
    layers: Sequence[Mapping[str, Any]],
    params_before: int,
    params_after: int,
) -> dict[str, Any]:
    import torch_pruning as tp

    source = {"source": model_spec["source"]} if model_spec.get("source") is not None else {}
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": {
            **source,
            "arch": model_spec["arch"],
            "kwargs": dict(model_spec.get("kwargs") or {}),
            "input_shape": [int(d) for d in input_shape],
        },
        "pruning": {
            "library": f"torch-pruning {tp.__version__}",
            "history": [[str(n), bool(o), [int(i) for i in idx]] for n, o, idx in history],
            "layers": [dict(layer) for layer in layers],
        },
        "parameters": {"before": int(params_before), "after": int(params_after)},
        "weights": "model.pth",
    }


def read_architecture(path: str | Path) -> dict[str, Any]:
    """Read and check an architecture.json (InputError when missing, oversized or of another format)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError:
        raise InputError(
            f"{path}: no {ARCHITECTURE_FILE}; only jobs whose spec names a `model` write one (otherwise "
            "build the architecture yourself and load model.pth)"
        ) from None
    if size > MAX_BYTES:
        raise InputError(f"{path}: {size} bytes is over the {MAX_BYTES}-byte limit of an architecture record")
    try:  # a record nests 4 levels (pruning.history[i][2]); deeper JSON is refused before it is walked
        record = loads_bounded(path.read_text(encoding="utf-8"), MAX_DEPTH, path.name)
    except JSONDepthError as error:
        raise InputError(str(error)) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: not a readable JSON architecture record: {error}") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise InputError(f"{path}: not an {FORMAT} record")
    if record.get("version") != VERSION:
        raise InputError(
            f"{path}: {FORMAT} version {record.get('version')!r} is not supported (expected {VERSION})"
        )
    model = record.get("model")
    pruning = record.get("pruning", {})
    if (
        not isinstance(model, dict)
        or not isinstance(model.get("arch"), str)
        or not isinstance(model.get("kwargs", {}), dict)
        or not isinstance(model.get("input_shape"), list)
        or not all(isinstance(d, int) and 0 < d <= 65536 for d in model["input_shape"])
        or not isinstance(pruning, dict)
        or not isinstance(pruning.get("history", []), list)
    ):
        raise InputError(
            f"{path}: the architecture record is malformed (model.arch/kwargs/input_shape, pruning)"
        )
    return record


def build_deployed(record: Mapping[str, Any], out_dir: Path | None = None) -> nn.Module:
    """The architecture a record describes, with its recorded pruning applied (random weights). A record
    whose `model` names a `source` (a kind of input other than a state dict) is rebuilt by that kind, from
    the files in `out_dir` (`compression_core.sources.rebuild`)."""
    from compression_core.deploy.pruning import replay_history
    from compression_core.models import build_model

    model_spec = record["model"]
    if model_spec.get("source") is not None:
        from compression_core.sources import rebuild

        model = rebuild(model_spec, Path(out_dir or "."))
    else:
        model = build_model({"arch": model_spec["arch"], "kwargs": model_spec.get("kwargs", {})})
    history = record.get("pruning", {}).get("history", [])
    if history:
        example = torch.zeros(1, *model_spec["input_shape"])
        try:
            replay_history(model, example, history)
        except SpecError as error:
            raise InputError(f"{ARCHITECTURE_FILE}: {error}") from None
    return model


def load_model(out_dir: str | os.PathLike[str]) -> nn.Module:
    """The deployed module of a job's output folder: architecture built, recorded pruning applied, weights
    from `model.pth` loaded strictly (`torch.load(weights_only=True)`; `model.bin` decoded when it is the only
    weights file), in eval mode."""
    from compression_core.io import load_state_dict
    from compression_core.models import load_into

    out_dir = Path(out_dir)
    record = read_architecture(out_dir / ARCHITECTURE_FILE)
    name = str(record.get("weights", "model.pth"))
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise InputError(f"{ARCHITECTURE_FILE}: weights must be a file name in the same folder, not {name!r}")
    weights = out_dir / name
    model = build_deployed(record, out_dir)
    if not weights.is_file() and (out_dir / "model.bin").is_file():  # only the compact file downloaded
        from compression_core.format import decode_state_dict

        load_into(model, decode_state_dict((out_dir / "model.bin").read_bytes()))
    else:
        load_into(model, load_state_dict(weights))
    return model.eval()
