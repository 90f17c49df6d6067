"""Shared fixtures: a small MLP trained on scikit-learn's digits in well under a second."""

from __future__ import annotations

import pytest
import torch

from compression_core.data import DataSplits
from compression_core.methods.lc.lstep import l_step
from compression_core.methods.lc.spec import LStepSpec
from compression_core.models import build_model

MLP = {"arch": "mlp", "kwargs": {"sizes": [64, 48, 10]}}


@pytest.fixture(scope="session")
def reference_state(digits: DataSplits) -> dict[str, torch.Tensor]:
    """A trained MLP's state dict (plain SGD: an L step with no penalty)."""
    torch.manual_seed(0)
    model = build_model(MLP)
    l_step(model, {}, 0.0, digits.train, LStepSpec(epochs=15, lr=0.1, batch_size=32), 0)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture
def reference_model(reference_state: dict[str, torch.Tensor]) -> torch.nn.Module:
    model = build_model(MLP)
    model.load_state_dict(reference_state)
    return model


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every test here trains small models: one torch thread (tests/conftest.py says why)."""
