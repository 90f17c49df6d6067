"""The byte budget: what any one file may make this process allocate, checked before allocating.

Sizes declared inside a file (a `.npz` member's shape, a `.bin` tensor's shape) are multiplied by the
dtype's real width (plus, for `.bin` streams, the 8-byte symbols the decoder holds per entry) and compared
with this budget, so a small file cannot ask for gigabytes. Default 4 GiB; set `MCS_MAX_DECODE_BYTES`
(bytes) for a worker sized for larger models.
"""

from __future__ import annotations

import os

from compression_core.errors import InputError

ENV = "MCS_MAX_DECODE_BYTES"
DEFAULT_BYTES = 4 << 30


def byte_budget() -> int:
    value = os.environ.get(ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else DEFAULT_BYTES


def check_bytes(
    what: str, nbytes: int, budget: int | None = None, error: type[Exception] = InputError
) -> None:
    """Raise `error` when `nbytes` exceeds the budget, naming both and the setting."""
    limit = byte_budget() if budget is None else budget
    if nbytes > limit:
        raise error(f"{what} needs {nbytes:,} bytes, over the byte budget of {limit:,} ({ENV})")
