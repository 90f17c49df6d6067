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


def write_members(path: Path, members: list[tuple[str, tuple[int, ...], str, int]]) -> Path:
    """Zip members by their exact names (shape, dtype descr, zero data bytes), deflated."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, shape, descr, nbytes in members:
            with archive.open(name, "w", force_zip64=True) as handle:
                handle.write(npy_header(shape, descr))
                for start in range(0, nbytes, 1 << 20):
                    handle.write(bytes(min(1 << 20, nbytes - start)))
    return path


def test_a_duplicate_npz_member_is_refused_before_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`x_train` (deflated, 256 MiB declared) beside `x_train.npy` (small): the check must not size one
    and np.load read the other (issue 21, item 3)."""
    monkeypatch.setenv(ENV, str(64 << 20))
    rows = (256 << 20) // 4 // 8
    path = write_members(
        tmp_path / "twice.npz",
        [
            ("x_train", (rows, 8), "<f4", rows * 32),
            ("x_train.npy", (4, 8), "<f4", 128),
            ("y_train.npy", (4,), "<i8", 32),
        ],
    )
    assert path.stat().st_size < 1 << 20
    before = reset_peak()
    with pytest.raises(InputError, match="x_train.*twice"):
        load_upload(path)
    growth = peak_mib() - before
    print(f"peak RSS growth refusing a duplicate .npz member: {growth:.1f} MiB")
    assert growth < 32, growth  # loading the unchecked member would have made 256 MiB


def test_the_member_checked_is_the_member_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A member stored without `.npy` is sized and read under its own name: over the budget, refused."""
    monkeypatch.setenv(ENV, str(64 << 20))
    rows = (128 << 20) // 4 // 8
    path = write_members(
        tmp_path / "bare.npz", [("x_train", (rows, 8), "<f4", rows * 32), ("y_train", (rows,), "<i8", 0)]
    )
    with pytest.raises(InputError, match="over the byte budget"):
        load_upload(path)
    small = write_members(
        tmp_path / "small.npz",
        [("x_train", (6, 3), "<f4", 72), ("y_train.npy", (6,), "<i8", 48), ("x_test", (2, 3), "<f4", 24),
         ("y_test", (2,), "<i8", 16)],
    )  # fmt: skip
    splits = load_upload(small, validation=0.0)
    assert tuple(splits.train.tensors[0].shape) == (6, 3) and len(splits.test) == 2
