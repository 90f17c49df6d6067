"""Tensor sources that hand out one tensor at a time, so memory follows the largest tensor.

- `SafetensorsSource`: one `.safetensors` file or a sharded Hugging Face checkpoint
  (`model-0000i-of-0000N.safetensors` + `model.safetensors.index.json`). Headers are read up front
  (names, dtypes, shapes, offsets); data through `safe_open`, whose mapping is reopened after every
  `remap_bytes` read so that pages already used do not pile up in the process's resident set.
- `TorchFileSource`: a `.pth` through `torch.load(mmap=True, weights_only=True)` (never unpickling code),
  remapped the same way; a legacy (non-zip) file cannot be mapped and is loaded whole.

Reading order (which global pruning's tie-breaking follows): shards by file name, then within a shard the
order of the data in the file, as `safetensors.torch.load_file` gives it (the in-memory path's order); a
torch file's own order.
"""

from __future__ import annotations

import functools
import json
import math
import re
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from compression_core.errors import InputError
from compression_core.jsonbound import JSONDepthError, loads_bounded

REMAP_BYTES = 16 << 20  # file pages a mapping may leave resident before it is reopened
MAX_HEADER_BYTES = 100 << 20  # safetensors' own cap on a header
MAX_INDEX_BYTES = 64 << 20
INDEX_SUFFIX = ".safetensors.index.json"
MAX_JSON_DEPTH = 16  # a header or an index nests 3 levels; deeper JSON is refused before it is walked
_SHARD_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}\.safetensors$")

SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


@dataclass(frozen=True)
class TensorInfo:
    """What is known of a tensor before its data is read."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    shard: str  # the file holding it (file name, inside the source's folder)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * torch.empty((), dtype=self.dtype).element_size()


@dataclass(frozen=True)
class ShardHeader:
    """A safetensors file's header as stored: its raw bytes (8-byte length + JSON) and the parsed JSON."""

    raw: bytes
    entries: dict[str, Any]

    @property
    def data_start(self) -> int:
        return len(self.raw)


class _Remapped:
    """A handle reopened after `remap_bytes` have been read through it (thread-safe)."""

    def __init__(self, open_handle: Callable[[], Any], remap_bytes: int) -> None:
        self._open = open_handle
        self._remap_bytes = remap_bytes
        self._handle: Any = None
        self._read = 0
        self._lock = threading.Lock()

    def read(self, take: Callable[[Any], torch.Tensor], nbytes: int) -> torch.Tensor:
        with self._lock:
            if self._handle is None or self._read >= self._remap_bytes:
                self._handle = None  # drop the old mapping before making a new one
                self._handle, self._read = self._open(), 0
            self._read += nbytes
            tensor = take(self._handle)
            if self._read >= self._remap_bytes:  # unmap now: a large tensor's pages would stay resident
                self._handle = None  # (beside its copy) until the next read
            return tensor

    def close(self) -> None:
        with self._lock:
            self._handle = None


def read_safetensors_header(path: Path) -> ShardHeader:
    """The header of a safetensors file, checked for what this module relies on (InputError otherwise)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
            if len(head) != 8:
                raise InputError(f"{path.name}: not a safetensors file (shorter than 8 bytes)")
            (length,) = struct.unpack("<Q", head)
            if length > MAX_HEADER_BYTES:
                raise InputError(f"{path.name}: safetensors header of {length} bytes is over the cap")
            text = handle.read(length)
        entries = loads_bounded(text, MAX_JSON_DEPTH, f"{path.name}: the safetensors header")
    except OSError as error:
        raise InputError(f"{path.name}: cannot read ({error.strerror or error})") from None
    except JSONDepthError as error:
        raise InputError(str(error)) from None
    except (ValueError, UnicodeDecodeError):
        raise InputError(f"{path.name}: the safetensors header is not valid JSON") from None
    if len(text) != length or type(entries) is not dict:
        raise InputError(f"{path.name}: truncated or malformed safetensors header")
    return ShardHeader(head + text, entries)


def _open_safetensors(path: Path) -> Any:
    from safetensors import safe_open

    return safe_open(str(path), framework="pt", device="cpu")


class SafetensorsSource:
    """One safetensors file, or the shards an index names (all in one folder)."""

    def __init__(
        self, folder: Path, shards: list[str], *, index: Path | None = None, remap_bytes: int = REMAP_BYTES
    ) -> None:
        from safetensors import SafetensorError, safe_open

        self.folder = folder
        self.index = index
        self.shards = shards
        self.headers: dict[str, ShardHeader] = {}
        self.infos: list[TensorInfo] = []
        self._handles: dict[str, _Remapped] = {}
        for shard in shards:
            path = folder / shard
            header = read_safetensors_header(path)
            self.headers[shard] = header
            try:  # safetensors validates the whole header (offsets tile the data, shapes fit)
                with safe_open(str(path), framework="pt", device="cpu") as handle:
                    names = sorted(handle.keys())
            except (SafetensorError, OSError, ValueError, RuntimeError) as error:
                raise InputError(f"{shard}: not a readable safetensors file ({error})") from None
            if sorted(names) != sorted(key for key in header.entries if key != "__metadata__"):
                raise InputError(f"{shard}: the header lists other tensors than safetensors reads")
            # data order: what load_file (and so the in-memory path) gives
            names.sort(key=lambda name: header.entries[name]["data_offsets"][0])
            for name in names:
                entry = header.entries[name]
                dtype = SAFETENSORS_DTYPES.get(entry["dtype"])
                if dtype is None:
                    raise InputError(f"{shard}: tensor {name!r} has an unsupported dtype {entry['dtype']}")
                self.infos.append(TensorInfo(name, tuple(entry["shape"]), dtype, shard))
            self._handles[shard] = _Remapped(functools.partial(_open_safetensors, path), remap_bytes)
        self._by_name = {info.name: info for info in self.infos}
        if len(self._by_name) != len(self.infos):
            raise InputError("a tensor name appears in more than one shard")

    @property
    def sharded(self) -> bool:
        return self.index is not None

    def info(self, name: str) -> TensorInfo:
        return self._by_name[name]

    def load(self, name: str) -> torch.Tensor:
        """The tensor, in memory the caller owns (no view into a mapping)."""
        from safetensors import SafetensorError

        info = self._by_name[name]
        try:
            return self._handles[info.shard].read(lambda h: h.get_tensor(name), info.nbytes)
        except (SafetensorError, OSError, ValueError, RuntimeError) as error:
            raise InputError(f"{info.shard}: cannot read tensor {name!r} ({error})") from None

    def input_bytes(self) -> int:
        return sum((self.folder / shard).stat().st_size for shard in self.shards)

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()


class TorchFileSource:
    """A torch file through `torch.load(mmap=True, weights_only=True)`, one tensor copied out at a time."""

    def __init__(self, path: Path, *, remap_bytes: int = REMAP_BYTES) -> None:
        from compression_core.io import as_state_dict, load_torch_file

        self.path = path
        self.index = None
        self.shards = [path.name]
        self.headers: dict[str, ShardHeader] = {}

        def open_handle() -> dict[str, torch.Tensor]:
            return as_state_dict(load_torch_file(path, mmap=True), source=path.name)

        first = open_handle()
        self.infos = [TensorInfo(n, tuple(t.shape), t.dtype, path.name) for n, t in first.items()]
        self._by_name = {info.name: info for info in self.infos}
        self._handle = _Remapped(open_handle, remap_bytes)
        del first

    sharded = False

    def info(self, name: str) -> TensorInfo:
        return self._by_name[name]

    def load(self, name: str) -> torch.Tensor:
        return self._handle.read(lambda h: h[name].clone(), self._by_name[name].nbytes)

    def input_bytes(self) -> int:
        return self.path.stat().st_size

    def close(self) -> None:
        self._handle.close()


Source = SafetensorsSource | TorchFileSource


def _read_index(path: Path) -> list[str]:
    """Shard file names of a `*.safetensors.index.json`, checked (plain names in the same folder)."""
    try:
        if path.stat().st_size > MAX_INDEX_BYTES:
            raise InputError(f"{path.name}: index over {MAX_INDEX_BYTES} bytes")
        doc = loads_bounded(path.read_text(encoding="utf-8"), MAX_JSON_DEPTH, f"{path.name}: the index")
    except OSError as error:
        raise InputError(f"{path.name}: cannot read ({error.strerror or error})") from None
    except JSONDepthError as error:
        raise InputError(str(error)) from None
    except (ValueError, UnicodeDecodeError):
        raise InputError(f"{path.name}: not valid JSON") from None
    weight_map = doc.get("weight_map") if type(doc) is dict else None
    if type(weight_map) is not dict or not weight_map:
        raise InputError(f"{path.name}: expected an object with a non-empty `weight_map`")
    shards = sorted(set(weight_map.values()), key=str)
    for shard in shards:
        if type(shard) is not str or not _SHARD_NAME.match(shard) or shard.startswith("."):
            raise InputError(f"{path.name}: shard {shard!r} is not a plain .safetensors file name")
        if not (path.parent / shard).is_file():
            raise InputError(f"{path.name}: shard {shard} is missing")
    return shards


def open_source(path: str | Path, *, remap_bytes: int = REMAP_BYTES) -> Source:
    """A source for a `.safetensors`, a `*.safetensors.index.json`, a folder holding one of those, or a
    torch file. Raises InputError for anything else."""
    from compression_core.io import TORCH_SUFFIXES

    path = Path(path)
    if path.is_dir():
        indexes = sorted(path.glob(f"*{INDEX_SUFFIX}"))
        singles = sorted(path.glob("*.safetensors"))
        if len(indexes) == 1:
            path = indexes[0]
        elif not indexes and len(singles) == 1:
            path = singles[0]
        else:
            raise InputError(
                f"{path}: expected one *{INDEX_SUFFIX} or one .safetensors file in the folder, found "
                f"{len(indexes)} indexes and {len(singles)} safetensors files"
            )
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.name.endswith(INDEX_SUFFIX):
        source = SafetensorsSource(path.parent, _read_index(path), index=path, remap_bytes=remap_bytes)
        _check_index_names(path, source)
        return source
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return SafetensorsSource(path.parent, [path.name], remap_bytes=remap_bytes)
    if suffix in TORCH_SUFFIXES:
        return TorchFileSource(path, remap_bytes=remap_bytes)
    raise InputError(
        f"{path.name}: unknown extension {suffix or '(none)'}; expected .safetensors, "
        f"*{INDEX_SUFFIX}, a folder, .pth, .pt or .bin"
    )


def _check_index_names(index: Path, source: SafetensorsSource) -> None:
    weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
    found = {info.name: info.shard for info in source.infos}
    if found != weight_map:
        missing = sorted(set(weight_map) - set(found))[:3]
        extra = sorted(set(found) - set(weight_map))[:3]
        moved = sorted(n for n in set(found) & set(weight_map) if found[n] != weight_map[n])[:3]
        raise InputError(
            f"{index.name}: the index and the shards disagree (missing {missing}, unlisted {extra}, "
            f"in another shard {moved})"
        )


def load_all(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of any input `open_source` reads, in its reading order: for the paths that need the
    whole model (data-aware jobs) when the input is sharded."""
    source = open_source(path)
    try:
        return {info.name: source.load(info.name) for info in source.infos}
    finally:
        source.close()
