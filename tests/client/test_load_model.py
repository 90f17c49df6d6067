"""`client.load_model`: no torch at import time; a clear error without the library."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_importing_the_client_does_not_import_torch():
    code = "import sys, client; assert callable(client.load_model); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_without_the_library_the_error_says_what_to_install(monkeypatch, tmp_path):
    import client

    monkeypatch.setitem(sys.modules, "compression_core", None)  # as if it were not installed
    with pytest.raises(ImportError, match="load_model needs PyTorch and the compression library"):
        client.load_model(tmp_path)
