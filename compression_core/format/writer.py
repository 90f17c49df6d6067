"""Writing `TensorRecord`s into the `.bin` container (layout in docs/format.md)."""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from compression_core.coding import huffman, positions, raw
from compression_core.coding.bitio import fixed_nbytes
from compression_core.errors import FormatError
from compression_core.format.layout import (
    FIXED_HEADER,
    MAGIC,
    MAX_MANIFEST_BYTES,
    VERSION,
    check_record,
    dtype_name,
)
from compression_core.records import TensorRecord

_INT_VIEW = {
    1: (torch.uint8, "<u1"),
    2: (torch.int16, "<i2"),
    4: (torch.int32, "<i4"),
    8: (torch.int64, "<i8"),
}


@dataclass(frozen=True)
class StreamStats:
    """Size of one stored stream: `bits` as stored (tables and sync points included)."""

    kind: str  # positions, indices, values, codebook, factors, header
    count: int  # symbols (coded streams) or elements (plain arrays)
    bits: int
    entropy_bits: float | None  # order-0 Shannon bound of a coded integer stream, else None
    coding: str  # huffman, raw, plain, json
    layout: str = ""  # positions only: gaps or bitmap


@dataclass
class EncodedModel:
    """The container bytes plus where they went: sum of all stream bits + overhead_bits = 8 * len(data)."""

    data: bytes
    streams: dict[str, list[StreamStats]] = field(default_factory=dict)
    overhead_bits: int = 0  # fixed header, metadata and manifest framing, not owned by any tensor


def tensor_bytes(t: torch.Tensor) -> bytes:
    """Little-endian raw bytes of a tensor in its own dtype (bfloat16 and bool included)."""
    t = t.detach().cpu().contiguous()
    view_dtype, np_dtype = _INT_VIEW[t.element_size()]
    return t.view(view_dtype).numpy().astype(np_dtype, copy=False).tobytes()


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, torch.Tensor | np.ndarray):
        return obj.tolist()
    if isinstance(obj, tuple | set):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serializable")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), default=_jsonable, allow_nan=True)


class _Payload:
    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, data: bytes) -> dict[str, int]:
        ref = {"off": self.size, "len": len(data)}
        self.parts.append(data)
        self.size += len(data)
        return ref


def _plain(payload: _Payload, t: torch.Tensor, kind: str, stats: list[StreamStats]) -> dict[str, Any]:
    data = tensor_bytes(t)
    stats.append(StreamStats(kind, t.numel(), 8 * len(data), None, "plain"))
    return {"coding": "plain", "dtype": dtype_name(t.dtype), "shape": list(t.shape), **payload.add(data)}


def _indices(payload: _Payload, rec: TensorRecord, stats: list[StreamStats]) -> dict[str, Any]:
    assert rec.indices is not None and rec.codebook is not None
    sym = rec.indices.detach().cpu().reshape(-1).numpy()  # narrow (int8/int16): the coders take any int
    k = int(rec.codebook.numel())
    width = raw.width_for(k)
    coded = huffman.encode(sym) if rec.encoding == "huffman" and k <= huffman.MAX_ALPHABET else None
    # a table can outweigh Huffman's gain on short or flat streams: keep it only when smaller
    if coded is not None and len(coded) < fixed_nbytes(sym.size, width):
        coding, data = "huffman", coded
    else:
        coding, data = "raw", raw.encode(sym, width)
    ent = huffman.entropy_bits(sym)
    stats.append(StreamStats("indices", sym.size, 8 * len(data), ent, coding))
    return {"coding": coding, "count": int(sym.size), "width": width, **payload.add(data)}


def _positions(payload: _Payload, rec: TensorRecord, stats: list[StreamStats]) -> dict[str, Any]:
    assert rec.positions is not None
    p = rec.positions.detach().cpu().numpy()  # int32 for tensors under 2**31 entries: no int64 copy
    coded = positions.encode(p, rec.numel, rec.encoding)
    ent = huffman.entropy_bits(coded.symbols)
    stats.append(
        StreamStats("positions", coded.symbols.size, 8 * len(coded.data), ent, coded.coding, coded.layout)
    )
    return {
        "coding": coded.coding,
        "layout": coded.layout,
        "width": coded.width,
        "symbols": int(coded.symbols.size),
        "count": int(p.size),
        **payload.add(coded.data),
    }


def _entry(payload: _Payload, rec: TensorRecord, stats: list[StreamStats]) -> dict[str, Any]:
    if rec.encoding not in ("huffman", "raw"):
        raise FormatError(f"tensor {rec.name!r}: encoding must be 'huffman' or 'raw', not {rec.encoding!r}")
    check_record(rec)
    streams: dict[str, Any] = {}
    if rec.positions is not None:
        streams["positions"] = _positions(payload, rec, stats)
    if rec.values is not None:
        streams["values"] = _plain(payload, rec.values.reshape(-1), "values", stats)
    if rec.codebook is not None:
        streams["codebook"] = _plain(payload, rec.codebook, "codebook", stats)
        streams["indices"] = _indices(payload, rec, stats)
    if rec.factors is not None:
        streams["u"] = _plain(payload, rec.factors[0], "factors", stats)
        streams["v"] = _plain(payload, rec.factors[1], "factors", stats)
    return {
        "name": rec.name,
        "shape": [int(s) for s in rec.shape],
        "dtype": dtype_name(rec.dtype),
        "method": rec.method,
        "encoding": rec.encoding,
        "stats": rec.stats,
        "streams": streams,
    }


def encode_records(records: Sequence[TensorRecord], metadata: dict | None = None) -> EncodedModel:
    """Store `records` (and JSON-able `metadata`) losslessly in one `.bin` byte string."""
    names = [r.name for r in records]
    if len(set(names)) != len(names):
        raise FormatError("tensor names must be unique")
    if metadata is not None and not isinstance(metadata, dict):
        raise FormatError("metadata must be a dict")
    payload = _Payload()
    all_stats: dict[str, list[StreamStats]] = {}
    entries = []
    for rec in records:
        stats: list[StreamStats] = []
        entries.append(_entry(payload, rec, stats))
        all_stats[rec.name] = stats
    try:
        manifest_json = _dumps({"metadata": metadata or {}, "tensors": entries}).encode()
        entry_sizes = [len(_dumps(e).encode()) for e in entries]
    except (TypeError, ValueError) as exc:
        raise FormatError(f"metadata or stats are not JSON-serializable: {exc}") from exc
    if len(manifest_json) > MAX_MANIFEST_BYTES:
        raise FormatError(f"manifest of {len(manifest_json)} bytes exceeds {MAX_MANIFEST_BYTES}")
    manifest = zlib.compress(manifest_json, 9)
    body = manifest + b"".join(payload.parts)
    header = MAGIC + struct.pack("<HHIQ", VERSION, 0, len(manifest), payload.size)
    header += struct.pack("<I", zlib.crc32(body))
    data = header + body
    assert len(header) == FIXED_HEADER
    # Attribute the compressed manifest to tensors in proportion to their JSON entry sizes.
    scale = len(manifest) / max(len(manifest_json), 1)
    for rec, size in zip(records, entry_sizes, strict=True):
        all_stats[rec.name].append(StreamStats("header", 1, int(8 * size * scale), None, "json"))
    stream_bits = sum(s.bits for lst in all_stats.values() for s in lst)
    return EncodedModel(data, all_stats, 8 * len(data) - stream_bits)
