"""A Huffman stream whose header is parsed (shared by `huffman` and the lock-step decoder `lockstep`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ParsedStream"]


@dataclass
class ParsedStream:
    """A Huffman stream whose header is read and checked; `symbols` is set once decoded."""

    count: int
    symbols: np.ndarray | None = None  # set at once for empty and single-symbol streams
    used: np.ndarray | None = None
    lens: np.ndarray | None = None
    block: int = 0
    block_bits: np.ndarray | None = None
    payload: bytes = b""
