"""Fixtures shared by the library's test folders."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from compression_core.data import DataSplits, load_builtin

try:  # the service's tests; the library's tests run without FastAPI too
    from fastapi.testclient import TestClient
except ImportError:  # pragma: no cover
    TestClient = None  # type: ignore[assignment,misc]

if TestClient is not None:
    # With auth disabled the API answers loopback Host names only (service.site_guard); Starlette's test
    # client calls itself "testserver", so tests speak as a local client, http://127.0.0.1.
    _init = TestClient.__init__

    def _loopback_init(
        self: TestClient, app: object, base_url: str = "http://127.0.0.1", *args: object, **kwargs: object
    ) -> None:
        _init(self, app, base_url, *args, **kwargs)  # type: ignore[arg-type]

    TestClient.__init__ = _loopback_init  # type: ignore[method-assign]


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
