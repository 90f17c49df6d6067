"""`load_model(out_dir)`: the deployed module of a downloaded job folder, through `compression_core`.

The client itself needs neither torch nor the library: this import happens only when called, and says what
to install when they are missing.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

__all__ = ["load_model"]


def load_model(out_dir: str | os.PathLike[str]) -> Any:
    """Build the architecture named in `out_dir/architecture.json`, apply its recorded pruning and load
    `out_dir/model.pth` strictly; returns a `torch.nn.Module` in eval mode (see compression_core.load_model).
    Download `architecture.json` and `model.pth` of the job into `out_dir` first."""
    try:  # an optional, dynamic import: the mcs-client distribution depends on neither torch nor the library
        library = importlib.import_module("compression_core")
    except ImportError as exc:  # the standalone client: torch and the library are optional extras
        raise ImportError(
            "load_model needs PyTorch and the compression library (torch, torchvision, torch-pruning and "
            f"compression_core); install them next to the client ({exc})"
        ) from exc
    return library.load_model(out_dir)
