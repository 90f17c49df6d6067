"""Decoded tensors written into their final place as they come, in the input's layout.

Both writers lay out the whole file first (every tensor's size is known from the input: reconstruction
keeps shapes and dtypes), then each tensor's bytes are written at their offset with `pwrite`, from any
thread, in any order, so memory never holds more than the tensors being compressed.

- `ShardedSafetensorsWriter`: each output shard starts with the input shard's header verbatim (same names,
  dtypes, shapes, offsets and `__metadata__`), and the index file is copied as it is.
- `TorchFileWriter`: `model.pth` as `torch.save` lays it out, made with `torch.serialization.skip_data`
  (which leaves the storage bytes empty), then filled in; the zip CRC-32s and torch's serialization id
  (derived from them) are patched at the end, so the file is byte for byte what `io.save_state_dict` writes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import sys
import threading
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import torch

from compression_core.errors import CompressionError
from compression_core.format.writer import tensor_bytes
from compression_core.streaming.source import ShardHeader, TensorInfo

_DESCRIPTOR = 0x08074B50
_CENTRAL = 0x02014B50


def _serialization_id(old: bytes, crcs: Sequence[int]) -> bytes:
    """torch's `.data/serialization_id`: 20 digits from the record names (kept), then 20 digits of
    c10::hash_combine over every earlier record's CRC-32 (caffe2/serialize/inline_container.cc)."""
    mask, combined = (1 << 64) - 1, 0
    for crc in crcs:
        combined ^= (crc + 0x9E3779B9 + ((combined << 6) & mask) + (combined >> 2)) & mask
    return old[:20] + b"%020d" % combined


def raw_bytes(tensor: torch.Tensor) -> memoryview:
    """`tensor_bytes` without its copy: on a little-endian machine the tensor's own memory is those bytes."""
    if sys.byteorder != "little":
        return memoryview(tensor_bytes(tensor))
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().data


class _Slots:
    """name -> (file descriptor, offset, size); `write` checks the size and writes in place."""

    def __init__(self) -> None:
        self.slots: dict[str, tuple[int, int, int]] = {}
        self.crcs: dict[str, int] = {}
        self._lock = threading.Lock()

    def write(self, name: str, tensor: torch.Tensor) -> None:
        fd, offset, size = self.slots[name]
        data = raw_bytes(tensor)
        if len(data) != size:
            raise CompressionError(f"decoded {name!r} has {len(data)} bytes, its slot {size}")
        written = 0
        while written < size:  # one pwrite moves at most ~2 GiB
            step = os.pwrite(fd, data[written:], offset + written)
            if step <= 0:
                raise CompressionError(f"short write of {name!r} ({written} of {size} bytes)")
            written += step
        crc = zlib.crc32(data)
        with self._lock:
            self.crcs[name] = crc


class ShardedSafetensorsWriter(_Slots):
    """Output shards named like the input's, in `out_dir`, plus a copy of the index (if any)."""

    def __init__(self, out_dir: Path, headers: dict[str, ShardHeader], index: Path | None) -> None:
        super().__init__()
        self.out_dir = out_dir
        self.index = index
        self._files: list[tuple[int, Path, Path]] = []
        for shard, header in headers.items():
            final = out_dir / shard
            tmp = out_dir / f".{shard}.tmp"
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            self._files.append((fd, tmp, final))
            os.pwrite(fd, header.raw, 0)
            end = header.data_start
            for name, entry in header.entries.items():
                if name == "__metadata__":
                    continue
                begin, stop = entry["data_offsets"]
                self.slots[name] = (fd, header.data_start + begin, stop - begin)
                end = max(end, header.data_start + stop)
            os.ftruncate(fd, end)

    def finish(self) -> list[Path]:
        paths = []
        for fd, tmp, final in self._files:
            os.fsync(fd)
            os.close(fd)
            os.replace(tmp, final)
            paths.append(final)
        self._files = []
        if self.index is not None:
            target = self.out_dir / self.index.name
            shutil.copyfile(self.index, target)
            paths.append(target)
        return paths

    def abort(self) -> None:
        for fd, tmp, _ in self._files:
            os.close(fd)
            tmp.unlink(missing_ok=True)
        self._files = []


class TorchFileWriter(_Slots):
    """`model.pth` with the tensors of `infos`, in that order, filled in by `write`."""

    def __init__(self, path: Path, infos: Sequence[TensorInfo]) -> None:
        super().__init__()
        self.path = path
        self.tmp = path.parent / f".{path.name}.tmp"
        # torch.empty only reserves address space: untouched pages are never resident
        placeholders = {info.name: torch.empty(info.shape, dtype=info.dtype) for info in infos}
        with torch.serialization.skip_data(), self.tmp.open("wb") as handle:
            torch.save(placeholders, handle)  # through a handle: the archive is "archive/", as io.py writes
        del placeholders
        reader = torch._C.PyTorchFileReader(str(self.tmp))
        offsets = [reader.get_record_offset(f"data/{i}") for i in range(len(infos))]  # type: ignore[attr-defined]
        self.fd = os.open(self.tmp, os.O_RDWR)
        for info, offset in zip(infos, offsets, strict=True):
            self.slots[info.name] = (self.fd, offset, info.nbytes)
        self._check_order(infos)

    def _check_order(self, infos: Sequence[TensorInfo]) -> None:
        """torch numbers storages in pickling order; confirm that record `data/i` is tensor i."""
        mapped = torch.load(self.tmp, mmap=True, weights_only=True)
        base = mapped[infos[0].name].untyped_storage().data_ptr() - self.slots[infos[0].name][1]
        for info in infos:
            if mapped[info.name].untyped_storage().data_ptr() - base != self.slots[info.name][1]:
                raise CompressionError(f"model.pth layout: {info.name!r} is not where expected")

    def finish(self) -> list[Path]:
        os.fsync(self.fd)
        os.close(self.fd)
        self._patch_crcs()
        os.replace(self.tmp, self.path)
        return [self.path]

    def _patch_crcs(self) -> None:
        """skip_data leaves each storage's CRC-32 zero: write the real ones (data descriptor and central
        directory), so zip tools accept the file as torch.save would have written it."""
        by_record = {}
        with zipfile.ZipFile(self.tmp) as archive:
            prefix = archive.namelist()[0].split("/", 1)[0]
            for i, name in enumerate(self.slots):
                by_record[f"{prefix}/data/{i}"] = self.crcs.get(name, 0)
            infos = {info.filename: info for info in archive.infolist()}
            start_dir: int = archive.start_dir
            id_record = f"{prefix}/.data/serialization_id"
            old_id = archive.read(id_record) if id_record in infos else None
        with self.tmp.open("r+b") as handle:
            if old_id is not None:  # torch derives it from the CRCs: recompute it, as torch.save would have
                new_id = _serialization_id(old_id, [by_record.get(n, i.CRC) for n, i in infos.items()][:-1])
                if list(infos)[-1] != id_record or len(new_id) != len(old_id):
                    raise CompressionError("model.pth layout: unexpected serialization id")
                handle.seek(infos[id_record].header_offset + 26)
                name_len, extra_len = struct.unpack("<HH", handle.read(4))
                handle.seek(infos[id_record].header_offset + 30 + name_len + extra_len)
                handle.write(new_id)
                by_record[id_record] = zlib.crc32(new_id)
            for record, crc in by_record.items():
                info = infos[record]
                handle.seek(info.header_offset + 26)
                name_len, extra_len = struct.unpack("<HH", handle.read(4))
                end = info.header_offset + 30 + name_len + extra_len + info.compress_size
                handle.seek(end)
                if info.flag_bits & 0x08 and struct.unpack("<I", handle.read(4))[0] == _DESCRIPTOR:
                    handle.write(struct.pack("<I", crc))
                else:
                    handle.seek(info.header_offset + 14)
                    handle.write(struct.pack("<I", crc))
            position = start_dir
            while True:
                handle.seek(position)
                fixed = handle.read(46)
                if len(fixed) < 46 or struct.unpack("<I", fixed[:4])[0] != _CENTRAL:
                    break
                name_len, extra_len, comment_len = struct.unpack("<HHH", fixed[28:34])
                filename = handle.read(name_len).decode("utf-8")
                if filename in by_record:
                    handle.seek(position + 16)
                    handle.write(struct.pack("<I", by_record[filename]))
                position += 46 + name_len + extra_len + comment_len

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.tmp.unlink(missing_ok=True)
