"""Reading the `.bin` container defensively: every declared size is checked against the bytes present
before anything proportional to it is allocated, and every failure is a FormatError."""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compression_core.budget import check_bytes
from compression_core.coding import huffman, positions, raw
from compression_core.errors import FormatError
from compression_core.format.layout import (
    DEFAULT_MAX_ELEMENTS,
    DTYPES,
    FIXED_HEADER,
    MAGIC,
    MAX_MANIFEST_BYTES,
    MAX_NAME_CHARS,
    MAX_NDIM,
    STREAM_VERSION,
    VERSION,
    check_record,
    numel,
)
from compression_core.records import TensorRecord, index_dtype, position_dtype

SYMBOL_BYTES = 8  # the Huffman and raw decoders hold one int64 symbol per entry while decoding

_NP_INT = {1: "<u1", 2: "<i2", 4: "<i4", 8: "<i8"}
_NUMPY = {torch.int16: np.int16, torch.int32: np.int32, torch.int64: np.int64}
_TORCH_INT = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
_ENTRY_KEYS = {"name", "shape", "dtype", "method", "encoding", "stats", "streams"}
_STREAM_KEYS = {
    "plain": {"coding", "dtype", "shape", "off", "len"},
    "indices": {"coding", "count", "width", "off", "len"},
    "positions": {"coding", "layout", "width", "symbols", "count", "off", "len"},
}


def _int(obj: dict, key: str, where: str, lo: int = 0, hi: int = 1 << 62) -> int:
    v = obj.get(key)
    if type(v) is not int or not lo <= v <= hi:
        raise FormatError(f"{where}: {key!r} must be an integer in [{lo}, {hi}], got {v!r}")
    return v


def _str(obj: dict, key: str, where: str) -> str:
    v = obj.get(key)
    if type(v) is not str:
        raise FormatError(f"{where}: {key!r} must be a string")
    return v


def _keys(obj: Any, allowed: set[str], where: str) -> dict:
    if type(obj) is not dict:
        raise FormatError(f"{where}: expected a JSON object")
    if set(obj) != allowed:
        raise FormatError(f"{where}: keys {sorted(obj)} differ from {sorted(allowed)}")
    return obj


def _shape(v: Any, where: str) -> tuple[int, ...]:
    if type(v) is not list or len(v) > MAX_NDIM or any(type(s) is not int or s < 0 for s in v):
        raise FormatError(f"{where}: shape must be a list of at most {MAX_NDIM} non-negative integers")
    return tuple(v)


def _split(data: bytes) -> tuple[bytes, memoryview]:
    """Check the fixed header and checksum; return (manifest JSON text, payload)."""
    if len(data) < FIXED_HEADER:
        raise FormatError(f"file of {len(data)} bytes is shorter than the {FIXED_HEADER}-byte header")
    version, mlen, plen, crc = _header(data[:FIXED_HEADER])
    if FIXED_HEADER + mlen + plen != len(data):
        raise FormatError(
            f"header declares {FIXED_HEADER + mlen + plen} bytes, file has {len(data)} (truncated or padded)"
        )
    body = memoryview(data)[FIXED_HEADER:]
    if zlib.crc32(body) != crc:
        raise FormatError("checksum mismatch: the file is corrupted")
    if version == STREAM_VERSION:  # payload first, manifest last (docs/format.md, section 2)
        return _inflate(body[plen:]), body[:plen]
    return _inflate(body[:mlen]), body[mlen:]


def _header(head: bytes) -> tuple[int, int, int, int]:
    """(version, manifest length, payload length, CRC-32) of a fixed header, checked."""
    if head[:4] != MAGIC:
        raise FormatError("not a compressed-model file (bad magic bytes)")
    version, flags, mlen, plen, crc = struct.unpack("<HHIQI", head[4:FIXED_HEADER])
    if version not in (VERSION, STREAM_VERSION):
        raise FormatError(f"unsupported format version {version} (this reader knows {VERSION} and 2)")
    if flags != 0:
        raise FormatError(f"unknown header flags {flags:#x}")
    return version, mlen, plen, crc


def _inflate(compressed: bytes | memoryview) -> bytes:
    d = zlib.decompressobj()
    try:
        text = d.decompress(compressed, MAX_MANIFEST_BYTES + 1)
    except zlib.error as exc:
        raise FormatError(f"manifest is not valid zlib data: {exc}") from exc
    if len(text) > MAX_MANIFEST_BYTES or not d.eof or d.unused_data:
        raise FormatError("manifest is over the size cap or not one complete zlib stream")
    return text


def _parse_manifest(text: bytes) -> tuple[dict, list]:
    try:
        doc = json.loads(text.decode("utf-8"))
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise FormatError(f"manifest is not valid JSON: {str(exc)[:200]}") from None
    doc = _keys(doc, {"metadata", "tensors"}, "manifest")
    if type(doc["metadata"]) is not dict or type(doc["tensors"]) is not list:
        raise FormatError("manifest: metadata must be an object and tensors a list")
    return doc["metadata"], doc["tensors"]


class _Streams:
    """Hands out the payload stream by stream; streams must tile the payload in order, exactly."""

    def __init__(self, payload: Any) -> None:  # a memoryview, or format.stream's file-backed payload
        self.payload = payload
        self.pos = 0

    def take(self, desc: dict, where: str) -> bytes:
        off = _int(desc, "off", where)
        length = _int(desc, "len", where)
        if off != self.pos or off + length > len(self.payload):
            raise FormatError(
                f"{where}: stream at {off}+{length} does not follow at {self.pos} in the payload"
            )
        self.pos = off + length
        return bytes(self.payload[off : off + length])

    def finish(self) -> None:
        if self.pos != len(self.payload):
            raise FormatError(f"payload has {len(self.payload) - self.pos} bytes no tensor refers to")


def _plain(streams: _Streams, desc: Any, where: str, ndim: int) -> torch.Tensor:
    desc = _keys(desc, _STREAM_KEYS["plain"], where)
    if desc["coding"] != "plain":
        raise FormatError(f"{where}: coding must be 'plain'")
    name = _str(desc, "dtype", where)
    if name not in DTYPES:
        raise FormatError(f"{where}: dtype {name!r} is not allowed")
    shape = _shape(desc["shape"], where)
    if len(shape) != ndim:
        raise FormatError(f"{where}: expected {ndim} dimensions, got {len(shape)}")
    dtype = DTYPES[name]
    size = torch.empty(0, dtype=dtype).element_size()
    data = streams.take(desc, where)
    if len(data) != numel(shape) * size:
        raise FormatError(
            f"{where}: {len(data)} bytes stored, {numel(shape) * size} needed for {list(shape)}"
        )
    arr = np.frombuffer(data, dtype=_NP_INT[size]).astype(_NP_INT[size][1:], copy=True)
    t = torch.from_numpy(arr).view(dtype).reshape(shape)
    if dtype == torch.bool and bool((arr > 1).any()):
        raise FormatError(f"{where}: bool bytes must be 0 or 1")
    return t


def _symbol_dtype(top: int) -> type:
    """The narrowest unsigned type holding symbols up to `top`."""
    for kind, bits in ((np.uint8, 8), (np.uint16, 16), (np.uint32, 32)):
        if top < 1 << bits:
            return kind
    return np.int64


class _Batch:
    """Integer streams collected over the whole file, so all Huffman streams decode in one lockstep pass;
    each job's `finish` validates its symbols and stores them in its record.

    `narrow` (the streaming path, where one tensor may be most of memory): symbols are decoded in the
    narrowest type their alphabet allows and records hold int32 positions and int16 indices; streams of
    over `LARGE` symbols are decoded and finished one at a time, so their symbols never coexist."""

    LARGE = 1 << 20

    def __init__(self, narrow: bool = False) -> None:
        self.narrow = narrow
        self.jobs: list[tuple[huffman.ParsedStream | np.ndarray, str, Callable[[np.ndarray], None]]] = []

    def add(self, data: bytes, coding: Any, count: int, width: int, where: str, finish: Callable) -> None:
        try:
            if coding == "raw":
                kind = _symbol_dtype((1 << width) - 1) if self.narrow else np.int64
                job: huffman.ParsedStream | np.ndarray = raw.decode(data, count, width, kind)
            elif coding == "huffman":
                job = huffman.parse_exact(data, count)
                if self.narrow:
                    job.dtype = _symbol_dtype(job.top)
            else:
                raise FormatError(f"unknown coding {coding!r}")
        except FormatError as exc:
            raise FormatError(f"{where}: {exc}") from None
        self.jobs.append((job, where, finish))

    def run(self) -> None:
        def large(job: huffman.ParsedStream | np.ndarray) -> bool:
            return self.narrow and isinstance(job, huffman.ParsedStream) and job.count > self.LARGE

        small = [job for job in self.jobs if not large(job[0])]
        self._run(small)
        for job in self.jobs:
            if large(job[0]):
                self._run([job])
        self.jobs = []

    @staticmethod
    def _run(jobs: list[tuple[huffman.ParsedStream | np.ndarray, str, Callable[[np.ndarray], None]]]) -> None:
        parsed = [job for job, _, _ in jobs if isinstance(job, huffman.ParsedStream)]
        try:
            huffman.decode_parsed(parsed)
        except FormatError as exc:
            raise FormatError(f"a Huffman stream is corrupted: {exc}") from None
        for job, where, finish in jobs:
            symbols = job.symbols if isinstance(job, huffman.ParsedStream) else job
            assert symbols is not None
            try:
                finish(symbols)
            except FormatError as exc:
                raise FormatError(f"{where}: {exc}") from None
            if isinstance(job, huffman.ParsedStream):
                job.symbols = None  # the record holds what it needs; drop the symbols now


def _indices(
    batch: _Batch, streams: _Streams, desc: Any, where: str, rec: TensorRecord, max_count: int
) -> None:
    desc = _keys(desc, _STREAM_KEYS["indices"], where)
    assert rec.codebook is not None
    k = rec.codebook.numel()
    count = _int(desc, "count", where, hi=max_count)
    width = _int(desc, "width", where, hi=32)
    if width != raw.width_for(k):
        raise FormatError(f"{where}: width {width} does not match a codebook of {k} entries")

    def finish(sym: np.ndarray) -> None:
        if sym.size and int(sym.max()) >= k:
            raise FormatError("an index lies outside the codebook")
        kind = index_dtype(k) if batch.narrow else torch.int64
        rec.indices = torch.from_numpy(sym.astype(_NUMPY[kind], copy=False))

    batch.add(streams.take(desc, where), desc["coding"], count, width, where, finish)


def _positions(batch: _Batch, streams: _Streams, desc: Any, where: str, rec: TensorRecord, n: int) -> int:
    """Queue the positions stream; returns the declared count of kept entries."""
    desc = _keys(desc, _STREAM_KEYS["positions"], where)
    count = _int(desc, "count", where, hi=n)
    symbols = _int(desc, "symbols", where, hi=n + 1)
    layout = _str(desc, "layout", where)
    width = _int(desc, "width", where, hi=64)
    try:
        positions.check_layout(layout=layout, width=width, symbols=symbols, count=count, numel=n)
    except FormatError as exc:
        raise FormatError(f"{where}: {exc}") from None

    def finish(sym: np.ndarray) -> None:
        kind = _NUMPY[position_dtype(n) if batch.narrow else torch.int64]
        pos = positions.from_symbols(sym, layout=layout, width=width, count=count, numel=n, dtype=kind)
        rec.positions = torch.from_numpy(pos)

    batch.add(streams.take(desc, where), desc["coding"], symbols, width, where, finish)
    return count


def _record(entry: Any, streams: _Streams, batch: _Batch, index: int) -> TensorRecord:
    where = f"tensor #{index}"
    entry = _keys(entry, _ENTRY_KEYS, where)
    name = _str(entry, "name", where)
    if len(name) > MAX_NAME_CHARS:
        raise FormatError(f"{where}: name longer than {MAX_NAME_CHARS} characters")
    where = f"tensor {name!r}"
    shape = _shape(entry["shape"], where)
    dtype = DTYPES.get(_str(entry, "dtype", where))
    if dtype is None:
        raise FormatError(f"{where}: dtype {entry['dtype']!r} is not allowed")
    encoding = _str(entry, "encoding", where)
    if encoding not in ("huffman", "raw"):
        raise FormatError(f"{where}: unknown encoding {encoding!r}")
    if type(entry["stats"]) is not dict:
        raise FormatError(f"{where}: stats must be an object")
    s = entry["streams"]
    if type(s) is not dict or not set(s) <= {"values", "positions", "codebook", "indices", "u", "v"}:
        raise FormatError(f"{where}: streams must be an object of known roles")
    n = numel(shape)
    rec = TensorRecord(name, shape, dtype, method=_str(entry, "method", where), encoding=encoding)
    rec.stats = entry["stats"]
    # Streams are read in the order the writer emits them, so payload offsets can be checked in sequence.
    kept = n
    if "positions" in s:
        kept = _positions(batch, streams, s["positions"], f"{where} positions", rec, n)
    if "values" in s:
        rec.values = _plain(streams, s["values"], f"{where} values", 1)
    if ("codebook" in s) != ("indices" in s):
        raise FormatError(f"{where}: codebook and indices come together")
    if "codebook" in s:
        rec.codebook = _plain(streams, s["codebook"], f"{where} codebook", 1)
        _indices(batch, streams, s["indices"], f"{where} indices", rec, kept)
    if ("u" in s) != ("v" in s):
        raise FormatError(f"{where}: low-rank factors come in pairs")
    if "u" in s:
        rec.factors = (_plain(streams, s["u"], f"{where} u", 2), _plain(streams, s["v"], f"{where} v", 2))
    return rec


def decode_records(
    data: bytes, *, max_elements: int = DEFAULT_MAX_ELEMENTS, max_bytes: int | None = None
) -> tuple[list[TensorRecord], dict]:
    """Records and metadata of a `.bin` file; FormatError on anything malformed.

    `max_elements` caps the total entries the declared shapes may add up to (the decoded state dict's size);
    `max_bytes` (default: `compression_core.budget`) caps the bytes decoding them needs, by dtype width.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise FormatError("decode_records needs bytes")
    data = bytes(data)
    text, payload = _split(data)
    metadata, entries = _parse_manifest(text)
    total, total_bytes = 0, 0
    for i, e in enumerate(entries):
        if type(e) is dict:
            n = numel(_shape(e.get("shape"), f"tensor #{i}"))
            total += n
            if total > max_elements:
                raise FormatError(f"tensors declare more than {max_elements} entries in all")
            stored = e.get("dtype")
            dtype = DTYPES.get(stored) if isinstance(stored, str) else None
            width = torch.empty(0, dtype=dtype).element_size() if dtype is not None else 8
            total_bytes += n * (width + SYMBOL_BYTES)  # the decoded tensor and the decoder's int64 symbols
    check_bytes("decoding the tensors this file declares", total_bytes, max_bytes, FormatError)
    streams = _Streams(payload)
    batch = _Batch()
    records = [_record(e, streams, batch, i) for i, e in enumerate(entries)]
    streams.finish()
    batch.run()
    for rec in records:
        check_record(rec)
    if len({r.name for r in records}) != len(records):
        raise FormatError("tensor names repeat")
    return records, metadata


def decode_state_dict(
    source: bytes | str | Path, *, max_elements: int = DEFAULT_MAX_ELEMENTS, max_bytes: int | None = None
) -> dict[str, torch.Tensor]:
    """`reconstruct()` of every record in a `.bin` (bytes or a path): equals the model.pth it came with."""
    if isinstance(source, str | Path):
        path = Path(source)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise FormatError(f"cannot read {path}: {exc}") from exc
    else:
        data = source
    records, _ = decode_records(data, max_elements=max_elements, max_bytes=max_bytes)
    return {r.name: r.reconstruct() for r in records}
