"""Hostile files for upload tests: code-carrying pickles, forged zips, truncated and corrupted files."""

from __future__ import annotations

import builtins
import io
import os
import pickle
import struct
import zipfile
import zlib

import torch


class SystemCall:
    """Pickles to os.system(...): a loader that runs pickle code would create the marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


class EvalCall(SystemCall):
    """Pickles to builtins.eval(...) of code that creates the marker file."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (builtins.eval, (f"open({self.marker!r}, 'w').close()",))


class Custom:
    """A plain custom class: weights_only refuses any global it does not know."""

    def __init__(self) -> None:
        self.payload = [1, 2, 3]


def torch_bytes(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def valid_pth() -> bytes:
    return torch_bytes({"w": torch.arange(12, dtype=torch.float32).reshape(3, 4)})


def forged_zip(members: list[tuple[str, bytes]], liar: str | None, claim: int) -> bytes:
    """A stored zip, written by hand, whose member `liar` claims `claim` bytes (zip64 sizes)."""
    out, central = bytearray(), bytearray()
    for name, data in members:
        fname, crc, offset = name.encode(), zlib.crc32(data), len(out)
        if name == liar:
            extra, sizes = struct.pack("<HHQQ", 1, 16, claim, claim), (0xFFFFFFFF, 0xFFFFFFFF)
        else:
            extra, sizes = b"", (len(data), len(data))
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 0, 0, 0, crc, *sizes, len(fname), len(extra))
        out += fname + extra + data
        head = (0x02014B50, 45, 45, 0, 0, 0, 0, crc, *sizes, len(fname), len(extra), 0, 0, 0, 0, offset)
        central += struct.pack("<IHHHHHHIIIHHHHHII", *head)
        central += fname + extra
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), len(out), 0)
    return bytes(out + central + end)


def zip_members(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [(info.filename, archive.read(info.filename)) for info in archive.infolist()]


def huge_data_record_pth(claim: int = 100 * 10**9) -> bytes:
    members = zip_members(valid_pth())
    liar = next(name for name, _ in members if name.endswith("/data/0"))
    return forged_zip(members, liar, claim)


def deflated_pth() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in zip_members(valid_pth()):
            archive.writestr(name, data)
    return out.getvalue()


def huge_numel_pth() -> bytes:
    """A well-formed zip whose pickle claims a storage of 10^11 elements for a 16-byte record."""
    big = (10**11).to_bytes(5, "little")
    members = []
    for name, data in zip_members(torch_bytes({"w": torch.zeros(4)})):
        if name.endswith("data.pkl"):
            patched = data.replace(
                b"K\x04tq\x07QK\x00K\x04\x85", b"\x8a\x05" + big + b"tq\x07QK\x00\x8a\x05" + big + b"\x85"
            )
            assert patched != data
            data = patched
        members.append((name, data))
    return forged_zip(members, None, 0)


def stride_zero_view_pth() -> bytes:
    """About 1 kB whose tensor is a (16384, 16384) stride-0 view of 4 floats: 1 GiB once contiguous."""
    return torch_bytes({"w": torch.zeros(4).as_strided((16384, 16384), (0, 0))})


def shared_views_pth(count: int = 200) -> bytes:
    """`count` names for one 1,000-float storage: `count` dense copies once loaded."""
    shared = torch.zeros(1000)
    return torch_bytes({f"v{i}": shared for i in range(count)})


def hostile_models(marker: str) -> dict[str, tuple[str, bytes]]:
    """name -> (upload filename, bytes). Every one must be refused, and none may run code."""
    good = valid_pth()
    corrupted = bytearray(good)
    start = good.index(b"data.pkl") + 40
    corrupted[start : start + 40] = os.urandom(40)
    safetensors_lie = struct.pack("<Q", 2**62) + b'{"w": {}}'
    return {
        "os.system pickle": ("evil.pth", pickle.dumps({"w": SystemCall(marker)})),
        "os.system in torch zip": ("evil.pth", torch_bytes({"w": torch.zeros(2), "x": SystemCall(marker)})),
        "builtins.eval in torch zip": ("evil.pt", torch_bytes({"w": EvalCall(marker)})),
        "builtins.eval pickle": ("evil.ckpt", pickle.dumps({"w": EvalCall(marker)}, protocol=2)),
        "custom class": ("custom.pth", torch_bytes({"w": torch.zeros(2), "c": Custom()})),
        "truncated zip": ("cut.pth", good[: len(good) // 2]),
        "truncated pickle": ("cut.pth", pickle.dumps({"w": 1.0})[:-3]),
        "corrupted zip": ("bad.pth", bytes(corrupted)),
        "data record claims 100 GB": ("huge.pth", huge_data_record_pth()),
        "storage claims 10^11 elements": ("numel.pth", huge_numel_pth()),
        "deflated members": ("deflated.pth", deflated_pth()),
        "safetensors header claims 2^62 bytes": ("lie.safetensors", safetensors_lie),
        "empty file": ("empty.safetensors", b""),
        "stride-0 view of 1 GiB": ("view.pth", stride_zero_view_pth()),
        "200 views of one storage": ("views.pth", shared_views_pth()),
        "float8 tensor": ("f8.pth", torch_bytes({"w": torch.zeros(4, dtype=torch.float8_e4m3fn)})),
        "complex tensor": ("c.pth", torch_bytes({"w": torch.zeros(4, dtype=torch.complex64)})),
        "not a model": ("text.safetensors", b"hello, I am not a model"),
    }
