"""The pipeline's fixtures: LeNet-5-shaped state dicts (shared with tests/core) and seeded torch."""

from __future__ import annotations

from tests.core.conftest import lenet5, lenet5_state_dict
from tests.data.conftest import _seeded

__all__ = ["_seeded", "lenet5", "lenet5_state_dict"]
