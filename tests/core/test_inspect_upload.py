"""Metadata-only checks of state-dict files (issue 10, items 1 and 8): files that expand past their own
bytes, overlap, repeat bytes through zero strides, or hold dtypes the library cannot compress are refused
before any tensor is loaded; honest files pass with their dense sizes."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from compression_core.errors import InputError
from compression_core.inspect_upload import inspect_state_dict
from compression_core.io import load_state_dict


def save(tmp_path: Path, state: dict[str, torch.Tensor], name: str = "m.pth") -> Path:
    path = tmp_path / name
    torch.save(state, path)
    return path


def raw_safetensors(tmp_path: Path, header: dict[str, object], data: bytes, raw: bytes | None = None) -> Path:
    text = raw if raw is not None else json.dumps(header).encode()
    path = tmp_path / "m.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def test_honest_files_pass_with_their_dense_sizes(tmp_path: Path) -> None:
    state = {"w": torch.randn(3, 4), "t": torch.randn(4, 3).t(), "b": torch.zeros(3, dtype=torch.bfloat16)}
    meta = inspect_state_dict(save(tmp_path, state))
    assert {t.name: (t.dtype, t.shape, t.nbytes) for t in meta.tensors} == {
        "w": ("F32", (3, 4), 48),
        "t": ("F32", (3, 4), 48),
        "b": ("BF16", (3,), 6),
    }
    save_file({"w": torch.randn(5, 2)}, str(tmp_path / "m.safetensors"))
    meta = inspect_state_dict(tmp_path / "m.safetensors")
    assert meta.tensors[0].shape == (5, 2) and meta.dense_bytes == 40 <= meta.file_bytes
    sliced = inspect_state_dict(save(tmp_path, {"w": torch.zeros(100)[10:20]}, "slice.pth"))
    assert sliced.dense_bytes == 40


def test_a_stride_zero_view_is_refused(tmp_path: Path) -> None:
    """The issue's 1 kB file: a (16384, 16384) view of a 4-float storage, 1 GiB once made contiguous."""
    path = save(tmp_path, {"w": torch.zeros(4).as_strided((16384, 16384), (0, 0))})
    assert path.stat().st_size < 2000
    with pytest.raises(InputError, match=r"'w' \[16384, 16384\] has stride 0"):
        inspect_state_dict(path)
    with pytest.raises(InputError, match="stride 0"):
        load_state_dict(path)


def test_views_sharing_one_storage_are_refused(tmp_path: Path) -> None:
    shared = torch.zeros(1000)
    with pytest.raises(InputError, match="share bytes"):
        inspect_state_dict(save(tmp_path, {f"v{i}": shared for i in range(200)}))
    with pytest.raises(InputError, match="share bytes"):  # partial overlap of two slices
        inspect_state_dict(save(tmp_path, {"a": shared[:600], "b": shared[400:]}, "two.pth"))


def test_a_view_overlapping_itself_is_refused(tmp_path: Path) -> None:
    path = save(tmp_path, {"w": torch.zeros(16).as_strided((4, 4), (1, 1))})
    with pytest.raises(InputError, match="overlaps itself"):
        inspect_state_dict(path)


@pytest.mark.parametrize(
    "dtype", [torch.float8_e4m3fn, torch.float8_e5m2, torch.uint16, torch.uint32, torch.complex64]
)
def test_unsupported_torch_dtypes_are_named(tmp_path: Path, dtype: torch.dtype) -> None:
    path = save(tmp_path, {"w": torch.zeros(4, dtype=dtype)})
    name = str(dtype).removeprefix("torch.")
    with pytest.raises(InputError, match=f"dtype {name}, which is not supported"):
        inspect_state_dict(path)


@pytest.mark.parametrize("code", ["F8_E4M3", "U16", "U32", "C64"])
def test_unsupported_safetensors_dtypes_are_named(tmp_path: Path, code: str) -> None:
    path = raw_safetensors(tmp_path, {"w": {"dtype": code, "shape": [2], "data_offsets": [0, 8]}}, bytes(8))
    with pytest.raises(InputError, match=f"\\({code}\\), which is not supported"):
        inspect_state_dict(path)


def test_safetensors_headers_that_lie_are_refused(tmp_path: Path) -> None:
    def entry(shape: list[int], start: int, end: int) -> dict[str, object]:
        return {"dtype": "F32", "shape": shape, "data_offsets": [start, end]}

    cases = {
        "past the data": ({"w": entry([4], 0, 16)}, 8, "the file stores 8 bytes of data"),
        "size mismatch": ({"w": entry([16384, 16384], 0, 16)}, 16, "offsets span 16"),
        "overlap": ({"a": entry([4], 0, 16), "b": entry([4], 8, 24)}, 24, "share bytes"),
        "bad shape": ({"w": entry([-1], 0, 0)}, 0, "invalid shape"),
    }
    for label, (header, size, message) in cases.items():
        with pytest.raises(InputError, match=message):
            inspect_state_dict(raw_safetensors(tmp_path, header, bytes(size)))
        del label
    duplicate = b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "w": {}}'
    with pytest.raises(InputError, match="duplicate key"):
        inspect_state_dict(raw_safetensors(tmp_path, {}, bytes(4), raw=duplicate))
    with pytest.raises(InputError, match="header claims"):
        (tmp_path / "lie.safetensors").write_bytes(struct.pack("<Q", 2**62) + b"{}")
        inspect_state_dict(tmp_path / "lie.safetensors")


def test_a_plain_pickle_is_refused_without_unpickling(tmp_path: Path) -> None:
    path = tmp_path / "legacy.pth"
    torch.save({"w": torch.zeros(2)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(InputError, match="refused: not a torch.save zip archive"):
        inspect_state_dict(path)


def test_refusing_the_amplifying_file_allocates_nothing(tmp_path: Path) -> None:
    """Peak RSS growth of a fresh process loading the 1 GiB-view file stays under 64 MiB (it was +1 GiB)."""
    path = save(tmp_path, {"w": torch.zeros(4).as_strided((16384, 16384), (0, 0))})
    script = textwrap.dedent(
        f"""
        import torch
        from pathlib import Path
        from compression_core.errors import InputError
        from compression_core.io import load_state_dict
        def kib(field):
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        Path("/proc/self/clear_refs").write_text("5")
        before = kib("VmRSS")
        try:
            load_state_dict({str(path)!r})
        except InputError:
            pass
        print((kib("VmHWM") - before) / 1024)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    growth_mib = float(done.stdout.strip().splitlines()[-1])
    assert growth_mib < 64, growth_mib
