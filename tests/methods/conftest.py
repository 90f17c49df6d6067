"""The per-tensor methods' fixtures: LeNet-5-shaped state dicts (shared with tests/core)."""

from __future__ import annotations

from tests.core.conftest import lenet5, lenet5_state_dict

__all__ = ["lenet5", "lenet5_state_dict"]
