"""A Huffman stream whose header is parsed (shared by `huffman` and the lock-step decoder `lockstep`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ParsedStream"]


@dataclass
class ParsedStream:
    """A Huffman stream whose header is read and checked; `symbols` is set once decoded, as `dtype` (a
    caller may narrow it to any integer type holding the alphabet before decoding)."""

    count: int
    symbols: np.ndarray | None = None  # set at once for empty streams
    used: np.ndarray | None = None
    lens: np.ndarray | None = None
    block: int = 0
    block_bits: np.ndarray | None = None
    payload: bytes = b""
    fill: int | None = None  # the one symbol of a single-symbol stream (made when decoded, as `dtype`)
    dtype: type = np.int64

    @property
    def top(self) -> int:
        """The largest symbol the stream can hold (0 when empty)."""
        if self.fill is not None:
            return self.fill
        return int(self.used[-1]) if self.used is not None and self.used.size else 0
