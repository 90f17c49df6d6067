"""A safetensors file read out of the tensors themselves, for writing into a tar member or a file without
first serializing the whole checkpoint in memory (`safetensors.torch.save` builds one bytes object, and its
`save_file` copies every tensor to bytes first): a 2 GB checkpoint then costs 2 GB more at the end of a
job. The header is laid out first (the sizes are known), then each tensor's own memory is read in turn.

The layout is the format's: an 8-byte little-endian header length, the JSON header (`dtype`, `shape`,
`data_offsets` per tensor, and `__metadata__`) padded with spaces to a multiple of 8, then the data. Tensors
are laid out in name order; safetensors and transformers read any order.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping

import torch

from compression_core.streaming.dense_out import raw_bytes

__all__ = ["SafetensorsStream"]

_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
    torch.float8_e4m3fn: "F8_E4M3",
    torch.float8_e5m2: "F8_E5M2",
}


class SafetensorsStream:
    """A read-only file object of the safetensors serialization of `tensors` (see the module docstring);
    `size` is its length in bytes."""

    def __init__(
        self, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
    ) -> None:
        self._tensors = [(name, tensors[name]) for name in sorted(tensors)]
        header: dict[str, object] = {"__metadata__": dict(metadata)} if metadata else {}
        offset = 0
        for name, tensor in self._tensors:
            if tensor.dtype not in _DTYPES:
                raise ValueError(f"{name}: dtype {tensor.dtype} has no safetensors name")
            size = tensor.numel() * tensor.element_size()
            header[name] = {
                "dtype": _DTYPES[tensor.dtype],
                "shape": list(tensor.shape),
                "data_offsets": [offset, offset + size],
            }
            offset += size
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)
        self._head = memoryview(struct.pack("<Q", len(text)) + text)
        self.size = len(self._head) + offset
        self._next = 0  # the tensor whose bytes come after the current piece
        self._piece: memoryview = self._head
        self._at = 0  # position in the current piece

    def read(self, n: int = -1) -> bytes:
        out = bytearray()
        while n < 0 or len(out) < n:
            if self._at == len(self._piece):
                if self._next == len(self._tensors):
                    break
                self._piece, self._at = raw_bytes(self._tensors[self._next][1]), 0
                self._next += 1
                continue
            stop = len(self._piece) if n < 0 else min(len(self._piece), self._at + n - len(out))
            out += self._piece[self._at : stop]
            self._at = stop
        return bytes(out)
