"""Uploaded data sets are sized from their .npy headers before loading (issue 10, items 2 and 8): a small
deflated `.npz` cannot make the worker allocate what it declares, a (10^12, 8) array is an InputError, not
a MemoryError, and a truncated archive is called truncated."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from compression_core.budget import ENV
from compression_core.data import load_upload
from compression_core.errors import InputError
from tests.reliability.memory import peak_mib, reset_peak


def npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": descr, "fortran_order": False, "shape": shape})
    return out.getvalue()


def write_npz(path: Path, members: dict[str, tuple[tuple[int, ...], str, int]]) -> Path:
    """Members (shape, dtype descr, data bytes written as zeros), deflated: zeros compress ~1000x."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for key, (shape, descr, nbytes) in members.items():
            with archive.open(f"{key}.npy", "w", force_zip64=True) as handle:
                handle.write(npy_header(shape, descr))
                chunk = bytes(1 << 20)
                for start in range(0, nbytes, len(chunk)):
                    handle.write(chunk[: min(len(chunk), nbytes - start)])
    return path


def test_a_deflated_npz_over_the_budget_is_refused_before_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, str(64 << 20))  # a 64 MiB budget; the file declares 128 MiB of float32
    rows = (128 << 20) // 4 // 8
    path = write_npz(
        tmp_path / "bomb.npz", {"x_train": ((rows, 8), "<f4", rows * 32), "y_train": ((rows,), "<i8", 0)}
    )
    assert path.stat().st_size < 1 << 20
    before = reset_peak()
    with pytest.raises(InputError, match="over the byte budget of 67,108,864"):
        load_upload(path)
    assert peak_mib() - before < 32  # np.load would have made 128 MiB + 32 MiB of arrays


def test_a_huge_declared_shape_is_an_input_error(tmp_path: Path) -> None:
    path = write_npz(
        tmp_path / "huge.npz", {"x_train": ((10**12, 8), "<f4", 0), "y_train": ((4,), "<i8", 32)}
    )
    with pytest.raises(InputError, match="more than the limit"):
        load_upload(path)
    path = write_npz(
        tmp_path / "wide.npz", {"x_train": ((1000, 10**9), "<f4", 0), "y_train": ((4,), "<i8", 32)}
    )
    with pytest.raises(InputError, match="byte budget"):
        load_upload(path)


def test_a_truncated_npz_is_called_truncated(tmp_path: Path) -> None:
    good = tmp_path / "good.npz"
    np.savez(good, x_train=np.zeros((100, 4), np.float32), y_train=np.zeros(100, np.int64))
    cut = tmp_path / "cut.npz"
    data = good.read_bytes()
    cut.write_bytes(data[: len(data) - 900])
    with pytest.raises(InputError, match="truncated or corrupted|not a zip file") as caught:
        load_upload(cut)
    assert "pickled" not in str(caught.value)


def test_object_arrays_are_still_refused_by_name(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "obj.npz", {"x_train": ((2, 2), "|O", 0), "y_train": ((2,), "<i8", 16)})
    with pytest.raises(InputError, match="pickled \\(object\\) array"):
        load_upload(path)
