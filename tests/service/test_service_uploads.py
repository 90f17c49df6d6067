"""The streaming multipart reader: a byte cap enforced while reading, safe names, format sniffing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from service.errors import InvalidSubmission, PayloadTooLarge
from service.uploads import stream_upload

BOUNDARY = b"xyzBOUNDARY"
CONTENT_TYPE = "multipart/form-data; boundary=xyzBOUNDARY"


def part(name: str, payload: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return b"--" + BOUNDARY + f"\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + payload + b"\r\n"


def body(*parts: bytes) -> bytes:
    return b"".join(parts) + b"--" + BOUNDARY + b"--\r\n"


async def chunked(data: bytes, size: int, consumed: list[int]) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        consumed.append(size)
        yield data[start : start + size]


def run(data: bytes, root: Path, *, max_bytes: int = 10**6, size: int = 7) -> tuple[object, list[int]]:
    consumed: list[int] = []

    async def go() -> object:
        return await stream_upload(
            CONTENT_TYPE, chunked(data, size, consumed), root, max_bytes=max_bytes, max_field_bytes=100
        )

    return anyio.run(go), consumed


def test_parts_are_written_under_fixed_names(tmp_path: Path) -> None:
    data = body(
        part("spec", b'{"version": 1}'),
        part("model", b"PK\x03\x04zipdata" * 50, "../../../etc/evil"),
        part("data", b"rows", "digits.NPZ"),
        part("teacher", b"\x08\x00\x00\x00\x00\x00\x00\x00{}", "t.safetensors"),
    )
    staged, _ = run(data, tmp_path)
    assert staged.fields == {"spec": '{"version": 1}'}  # type: ignore[attr-defined]
    names = {role: path.name for role, path in staged.files.items()}  # type: ignore[attr-defined]
    assert names == {"model": "model.pth", "data": "data.npz", "teacher": "teacher.safetensors"}
    assert staged.files["model"].read_bytes() == b"PK\x03\x04zipdata" * 50  # type: ignore[attr-defined]
    assert all(p.parent.parent == tmp_path for p in staged.files.values())  # type: ignore[attr-defined]


def test_the_cap_stops_reading_early_and_cleans_up(tmp_path: Path) -> None:
    data = body(part("model", b"\0" * 10_000, "m.safetensors"))
    with pytest.raises(PayloadTooLarge):
        _, consumed = run(data, tmp_path, max_bytes=1000, size=100)
    assert list(tmp_path.iterdir()) == []


def test_the_cap_counts_chunks_not_the_whole_body(tmp_path: Path) -> None:
    consumed: list[int] = []
    data = body(part("model", b"\0" * 100_000, "m.safetensors"))

    async def go() -> None:
        await stream_upload(
            CONTENT_TYPE, chunked(data, 1000, consumed), tmp_path, max_bytes=5000, max_field_bytes=100
        )

    with pytest.raises(PayloadTooLarge):
        anyio.run(go)
    assert sum(consumed) <= 6000  # stopped at the limit, not after reading 100 kB


def test_oversized_field_unknown_part_and_bad_content_type(tmp_path: Path) -> None:
    with pytest.raises(PayloadTooLarge):
        run(body(part("spec", b"x" * 500)), tmp_path)
    with pytest.raises(InvalidSubmission):
        run(body(part("script", b"x", "run.sh")), tmp_path)
    with pytest.raises(InvalidSubmission):
        run(body(part("model", b"a", "a.pth"), part("model", b"b", "b.pth")), tmp_path)

    async def plain() -> None:
        await stream_upload(
            "application/json", chunked(b"{}", 2, []), tmp_path, max_bytes=10, max_field_bytes=10
        )

    with pytest.raises(InvalidSubmission):
        anyio.run(plain)
    assert list(tmp_path.iterdir()) == []
