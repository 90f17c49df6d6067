"""Helpers for the resume tests of LC and SWS: a worker restart is a run cancelled after some rounds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from compression_core.models import build_model


def fresh_model(arch: dict[str, Any], state: dict[str, Any]) -> nn.Module:
    """The uploaded weights again, as a new worker would load them."""
    model = build_model(arch)
    model.load_state_dict(state)
    return model


def killed_after(rounds_done: int, field: str) -> tuple[Callable[[Any], None], Callable[[], bool], list[int]]:
    """An `on_<round>` callback recording `stats.<field>` and a should_cancel that stops the run once
    round `rounds_done` has finished, before the next one starts."""
    seen: list[int] = []

    def on_round(stats: Any) -> None:
        seen.append(getattr(stats, field))

    def should_cancel() -> bool:
        return bool(seen) and seen[-1] >= rounds_done

    return on_round, should_cancel, seen
