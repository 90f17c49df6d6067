from __future__ import annotations

from pathlib import Path

import pytest
import torch

from compression_core.data import DataSplits
from tests.sources.onnx.tiny import TinyNet, export, trained


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory, digits: DataSplits) -> tuple[Path, TinyNet]:
    """TinyNet trained on digits and exported to ONNX (once per session)."""
    model = trained(digits)
    path = export(model, digits.train.tensors[0][:1], tmp_path_factory.mktemp("onnx") / "tiny.onnx")
    return path, model


@pytest.fixture
def seeded() -> None:
    torch.manual_seed(0)
