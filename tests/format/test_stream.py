"""Version-2 `.bin` files (payload first, manifest last): written entry by entry, read record by record."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import torch

from compression_core.errors import FormatError
from compression_core.format import decode_records, encode_records
from compression_core.format.stream import StreamWriter, decode_entry, encode_entry, iter_records
from tests.format.conftest import make_record

KINDS = ["dense", "sparse", "codebook", "sparse_codebook", "lowrank"]


def _records() -> list:
    return [
        make_record(f"t{i}", (12, 10), torch.bfloat16 if i % 2 else torch.float32, kind, seed=i)
        for i, kind in enumerate(KINDS)
    ]


def _write(path: Path, records: list) -> int:
    writer = StreamWriter(path, {"source": "test"})
    for record in records:
        writer.append(encode_entry(record))
    size, _ = writer.finish()
    return size


def _same(a, b) -> bool:
    return a.name == b.name and a.dtype == b.dtype and torch.equal(a.reconstruct(), b.reconstruct())


def test_version_2_holds_what_version_1_holds(tmp_path: Path) -> None:
    records = _records()
    size = _write(tmp_path / "v2.bin", records)
    data = (tmp_path / "v2.bin").read_bytes()
    assert size == len(data) and struct.unpack("<H", data[4:6])[0] == 2
    v1 = encode_records(records, metadata={"source": "test"}).data
    got, metadata = decode_records(data)
    expected, _ = decode_records(v1)
    assert metadata == {"source": "test"}
    assert all(_same(a, b) and a.stats == b.stats for a, b in zip(got, expected, strict=True))
    # same payload bytes, only the place of the manifest differs
    mlen1 = struct.unpack("<I", v1[8:12])[0]
    plen = struct.unpack("<Q", data[12:20])[0]
    assert data[24 : 24 + plen] == v1[24 + mlen1 :]


def test_iter_records_reads_both_versions(tmp_path: Path) -> None:
    records = _records()
    _write(tmp_path / "v2.bin", records)
    (tmp_path / "v1.bin").write_bytes(encode_records(records).data)
    for name in ("v1.bin", "v2.bin"):
        got = [record for record, _ in iter_records(tmp_path / name)]
        assert all(_same(a, b) for a, b in zip(got, records, strict=True))


def test_decode_entry_round_trips_one_record() -> None:
    for record in _records():
        assert _same(decode_entry(encode_entry(record)), record)


def test_corrupted_or_unfinished_files_are_refused(tmp_path: Path) -> None:
    _write(tmp_path / "v2.bin", _records())
    data = bytearray((tmp_path / "v2.bin").read_bytes())
    data[40] ^= 1
    (tmp_path / "bad.bin").write_bytes(bytes(data))
    with pytest.raises(FormatError, match="checksum"):
        decode_records(bytes(data))
    with pytest.raises(FormatError, match="checksum"):
        list(iter_records(tmp_path / "bad.bin"))
    unfinished = bytes(24) + bytes(data[24:])  # the header is written last
    with pytest.raises(FormatError, match="magic"):
        decode_records(unfinished)
    with pytest.raises(FormatError, match="more than 100 entries"):
        list(iter_records(tmp_path / "v2.bin", max_elements=100))


def test_an_aborted_writer_leaves_nothing(tmp_path: Path) -> None:
    writer = StreamWriter(tmp_path / "x.bin", {})
    writer.append(encode_entry(_records()[0]))
    writer.abort()
    assert list(tmp_path.iterdir()) == []
    writer = StreamWriter(tmp_path / "y.bin", {})
    writer.append(encode_entry(_records()[0]))
    with pytest.raises(FormatError, match="unique"):
        writer.append(encode_entry(_records()[0]))
    writer.abort()
