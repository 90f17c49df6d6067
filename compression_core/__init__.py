"""Model compression library: pruning, weight sharing, low-rank and Huffman-coded artifacts.

Pure functions over tensors; no web, queue or database code lives here.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__version__ = "0.1.0"


def load_model(out_dir: str | os.PathLike[str]) -> torch.nn.Module:
    """The deployed module of a job's output folder: the architecture from `architecture.json`, its recorded
    pruning applied, `model.pth` loaded strictly (compression_core/deploy/architecture.py)."""
    from compression_core.deploy.architecture import load_model as _load

    return _load(out_dir)
