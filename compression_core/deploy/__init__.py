"""Deployable models (issue 12): physical structured pruning with Torch-Pruning, `architecture.json` and
`load_model`, ONNX export checked in onnxruntime, static int8 (onnxruntime QDQ), deployment measurements
and the preflight. Modules import torch lazily so `compression_core.deploy.spec` stays cheap.

- `pruning.py`: plan / refuse / apply / replay a Torch-Pruning plan
- `architecture.py`: `architecture.json` and `load_model(out_dir)`
- `onnx_export.py`, `int8.py`: `model.onnx`, `model.int8.onnx`, their checks
- `measure.py`, `table.py`: errors, latency percentiles, peak memory; the seed-003 table
- `stage.py`: the job's deployment stage; `preflight.py`: `mcs check` and `POST /jobs/validate`
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import os

    from torch import nn

__all__ = ["load_model"]


def load_model(out_dir: str | os.PathLike[str]) -> nn.Module:
    """The deployed module of a job's output folder (see `compression_core.deploy.architecture`)."""
    from compression_core.deploy.architecture import load_model as _load

    return _load(out_dir)
