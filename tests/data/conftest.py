"""Shared fixtures: small, fast objects (seconds per test on two cores)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)
