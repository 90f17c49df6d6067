"""Shared fixtures: a small MLP trained on scikit-learn's digits in about two seconds."""

from __future__ import annotations

import pytest
import torch

from compression_core.data import DataSplits
from compression_core.models import build_model
from compression_core.training.finetune import RetrainConfig, train_epochs

MLP = {"arch": "mlp", "kwargs": {"sizes": [64, 48, 10]}}
# a schedule long enough for 1,437 digits (the paper's defaults assume 60,000 MNIST digits per epoch)
SWS = {
    "epochs": 30,
    "batch_size": 32,
    "tau": 1.0,
    "lr_means": 1e-3,
    "lr_log_precisions": 1e-2,
    "lr_mixing": 1e-2,
}


@pytest.fixture(scope="session")
def reference_state(digits: DataSplits) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = build_model(MLP)
    train_epochs(model, digits.train, RetrainConfig(epochs=15, lr=0.05, batch_size=32))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture
def reference_model(reference_state: dict[str, torch.Tensor]) -> torch.nn.Module:
    model = build_model(MLP)
    model.load_state_dict(reference_state)
    return model


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every test here trains small models: one torch thread (tests/conftest.py says why)."""
