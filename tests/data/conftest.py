"""Shared fixtures: small, fast objects (seconds per test on two cores)."""

from __future__ import annotations

import pytest
import torch

from compression_core.data import DataSplits, load_builtin


@pytest.fixture(scope="session")
def digits() -> DataSplits:
    return load_builtin("digits")


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)
