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


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A tiny Llama-style LM trained once per run on the standard library's source bytes
    (tests/sources/hf/tiny_lm.py, about two minutes on one busy core): its checkpoint folder, the folder as
    a plain tar with a tokenizer file beside it, and the token ids (`train` for calibration, `test` held
    out)."""
    import tarfile

    pytest.importorskip("transformers")
    from tests.sources.hf.tiny_lm import train_tiny_lm, write_token_data

    root = tmp_path_factory.mktemp("tiny-lm")
    folder = train_tiny_lm(root / "lm")
    (folder / "tokenizer.json").write_text('{"note": "byte-level ids; carried to the output untouched"}')
    tar = root / "lm.tar"
    with tarfile.open(tar, "w") as archive:
        for path in sorted(folder.iterdir()):
            archive.add(path, arcname=f"lm/{path.name}")
    return {"folder": folder, "tar": tar, "tokens": write_token_data(root / "tokens.npz", test_rows=128)}
