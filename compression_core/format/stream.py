"""The `.bin` written and read one record at a time (version 2: payload first, manifest last).

`encode_entry` turns one record into its manifest entry and stream bytes (offsets from 0), which a pool
can do in parallel; `StreamWriter` appends entries in order, shifting their offsets, then writes the
manifest and patches the fixed header. `iter_records` reads a version 1 or 2 file record by record with
memory of one record (plus the manifest). Layout: docs/format.md, section 2.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compression_core.errors import FormatError
from compression_core.format.layout import (
    DEFAULT_MAX_ELEMENTS,
    FIXED_HEADER,
    MAGIC,
    MAX_MANIFEST_BYTES,
    STREAM_VERSION,
    check_record,
    numel,
)
from compression_core.format.reader import (
    _Batch,
    _header,
    _inflate,
    _parse_manifest,
    _record,
    _shape,
    _Streams,
)
from compression_core.format.writer import StreamStats, _dumps, _entry, _Payload
from compression_core.records import TensorRecord

_CHUNK = 16 << 20


@dataclass(frozen=True)
class EncodedEntry:
    """One record in container form: its manifest entry (offsets from 0), stream bytes and sizes."""

    entry: dict[str, Any]
    data: bytes
    streams: list[StreamStats]


def encode_entry(record: TensorRecord) -> EncodedEntry:
    """The entry and bytes `encode_records` would store for this record (JSON-plain, so it pickles)."""
    payload = _Payload()
    stats: list[StreamStats] = []
    try:
        entry = json.loads(_dumps(_entry(payload, record, stats)))
    except (TypeError, ValueError) as exc:
        raise FormatError(f"stats of {record.name!r} are not JSON-serializable: {exc}") from exc
    return EncodedEntry(entry, b"".join(payload.parts), stats)


def decode_entry(encoded: EncodedEntry) -> TensorRecord:
    """The record a reader gets back from `encoded`: what the dense outputs are rebuilt from."""
    return decode_entries([encoded])[0]


def decode_entries(encoded: Sequence[EncodedEntry]) -> list[TensorRecord]:
    """`decode_entry` of each, with all their Huffman streams decoded in one lockstep pass (the decoder's
    cost is per pass, not per symbol: many small tensors decoded one by one pay it many times).

    Records come back narrow (int32 positions, int16 indices; `reader._Batch`): the streaming path decodes
    every tensor back to build its dense output, and one tensor may be most of a worker's memory."""
    batch = _Batch(narrow=True)
    records = []
    for item in encoded:
        streams = _Streams(memoryview(item.data))
        records.append(_record(item.entry, streams, batch, 0))
        streams.finish()
    batch.run()
    for record in records:
        check_record(record)
    return records


class StreamWriter:
    """Appends encoded entries to a version-2 `.bin`; `finish` writes the manifest, then the header.

    Written to a temporary file beside `path` and renamed at the end, so nobody sees a partial file; the
    fixed header stays zero (an invalid magic) until everything before it is on disk.
    """

    def __init__(self, path: Path, metadata: dict[str, Any]) -> None:
        self.path = Path(path)
        self.metadata = metadata
        fd, name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        self._tmp = Path(name)
        self._file = os.fdopen(fd, "w+b")
        self._file.write(bytes(FIXED_HEADER))
        self._size = 0
        self._crc = 0
        self._entries: list[dict[str, Any]] = []
        self._names: set[str] = set()

    def append(self, encoded: EncodedEntry) -> None:
        name = encoded.entry["name"]
        if name in self._names:
            raise FormatError("tensor names must be unique")
        self._names.add(name)
        entry = dict(encoded.entry)
        entry["streams"] = {
            role: {**desc, "off": desc["off"] + self._size} for role, desc in encoded.entry["streams"].items()
        }
        self._entries.append(entry)
        self._file.write(encoded.data)
        self._crc = zlib.crc32(encoded.data, self._crc)
        self._size += len(encoded.data)

    def finish(self) -> tuple[int, dict[str, StreamStats]]:
        """Close the file into place; returns its size and each tensor's share of the manifest bits."""
        try:
            text = _dumps({"metadata": self.metadata, "tensors": self._entries}).encode()
        except (TypeError, ValueError) as exc:
            raise FormatError(f"metadata is not JSON-serializable: {exc}") from exc
        if len(text) > MAX_MANIFEST_BYTES:
            raise FormatError(f"manifest of {len(text)} bytes exceeds {MAX_MANIFEST_BYTES}")
        manifest = zlib.compress(text, 9)
        self._file.write(manifest)
        crc = zlib.crc32(manifest, self._crc)
        header = MAGIC + struct.pack("<HHIQI", STREAM_VERSION, 0, len(manifest), self._size, crc)
        self._file.seek(0)
        self._file.write(header)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._tmp, self.path)
        scale = len(manifest) / max(len(text), 1)
        shares = {
            e["name"]: StreamStats("header", 1, int(8 * len(_dumps(e).encode()) * scale), None, "json")
            for e in self._entries
        }
        return FIXED_HEADER + self._size + len(manifest), shares

    def abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)


class _FilePayload:
    """The payload of an open file, read by slices (`pread`), never mapped or held whole."""

    def __init__(self, fd: int, start: int, size: int) -> None:
        self.fd, self.start, self.size = fd, start, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, part: slice) -> bytes:
        begin, end = part.start, part.stop
        data = os.pread(self.fd, end - begin, self.start + begin)
        if len(data) != end - begin:
            raise FormatError("the file shrank while it was read")
        return data


def iter_records(
    path: str | Path, *, max_elements: int = DEFAULT_MAX_ELEMENTS
) -> Iterator[tuple[TensorRecord, dict[str, Any]]]:
    """(record, metadata) for each tensor of a version 1 or 2 `.bin`, one at a time, checked as
    `decode_records` checks them (checksum and element cap before the first record)."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise FormatError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        size = os.fstat(fd).st_size
        head = os.pread(fd, FIXED_HEADER, 0)
        if len(head) < FIXED_HEADER:
            raise FormatError(f"file of {size} bytes is shorter than the {FIXED_HEADER}-byte header")
        version, mlen, plen, crc = _header(head)
        if FIXED_HEADER + mlen + plen != size:
            raise FormatError(
                f"header declares {FIXED_HEADER + mlen + plen} bytes, file has {size} (truncated or padded)"
            )
        running, offset = 0, FIXED_HEADER
        while offset < size:
            chunk = os.pread(fd, min(_CHUNK, size - offset), offset)
            running = zlib.crc32(chunk, running)
            offset += len(chunk)
        if running != crc:
            raise FormatError("checksum mismatch: the file is corrupted")
        manifest_at = FIXED_HEADER + plen if version == STREAM_VERSION else FIXED_HEADER
        payload_at = FIXED_HEADER if version == STREAM_VERSION else FIXED_HEADER + mlen
        metadata, entries = _parse_manifest(_inflate(os.pread(fd, mlen, manifest_at)))
        total = 0
        for i, e in enumerate(entries):
            if type(e) is dict:
                total += numel(_shape(e.get("shape"), f"tensor #{i}"))
                if total > max_elements:
                    raise FormatError(f"tensors declare more than {max_elements} entries in all")
        streams = _Streams(_FilePayload(fd, payload_at, plen))
        names: set[str] = set()
        for i, e in enumerate(entries):
            batch = _Batch()
            record = _record(e, streams, batch, i)
            batch.run()
            check_record(record)
            if record.name in names:
                raise FormatError("tensor names repeat")
            names.add(record.name)
            yield record, metadata
        streams.finish()
    finally:
        os.close(fd)
