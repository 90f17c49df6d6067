"""The registry of model sources is filled once, whole, even when the API's threads ask at the same time
(a CI run saw 415 "not a model input" for 18 of 20 simultaneous submissions: they found it half-filled)."""

from __future__ import annotations

import importlib
import threading
import time
from typing import Any

import pytest

import compression_core.sources as sources


def test_simultaneous_first_lookups_all_see_every_builtin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "_kinds", {})
    monkeypatch.setattr(sources, "_state", {"loaded": False})
    real_import = importlib.import_module

    def slow_import(name: str, *args: Any) -> Any:
        time.sleep(0.05)  # widen the window the old code left open between "loaded" and the registrations
        return real_import(name, *args)

    monkeypatch.setattr(sources.importlib, "import_module", slow_import)
    barrier, seen, lock = threading.Barrier(8), [], threading.Lock()

    def look() -> None:
        barrier.wait()
        names = sorted(kind.name for kind in sources.kinds())
        with lock:
            seen.append(names)

    threads = [threading.Thread(target=look) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert seen == [sorted(sources.BUILTINS)] * 8
