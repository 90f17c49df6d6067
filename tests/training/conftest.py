"""The training loop's fixtures: seeded torch (shared with tests/data)."""

from __future__ import annotations

from tests.data.conftest import _seeded

__all__ = ["_seeded"]
