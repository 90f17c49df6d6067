"""Fixtures shared by the library's test folders."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from compression_core.data import DataSplits, load_builtin


@pytest.fixture(scope="session")
def digits() -> DataSplits:
    """scikit-learn's 8x8 digits with the built-in fixed split (loaded once per run)."""
    return load_builtin("digits")


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models train faster on one thread, and far faster when other processes share the two cores
    (two intra-op threads on an oversubscribed CPU wait for each other on every small op)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
