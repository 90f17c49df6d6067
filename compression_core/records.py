"""The compressed form of one tensor: the contract between the methods and the `.bin` format.

A method turns a dense tensor into a `TensorRecord`; the format stores records losslessly; `reconstruct`
turns a record back into a dense tensor. `model.pth` is built by `reconstruct` on the decoded records, so
`decode(model.bin)` equals `model.pth` bit for bit by construction.

Layout of the stored streams (all optional, combined as the methods need):
- dense:      `values` holds every entry (flattened, row-major) in `value_dtype`.
- pruned:     `positions` holds the sorted flat indices of the kept entries; the others are exactly zero.
- codebook:   `codebook` (float32, k entries) + `indices` (one per kept entry, or per entry when not pruned);
              entry value = codebook[index].
- kept raw:   with `positions` and no codebook, `values` holds the kept entries.
- low-rank:   `factors = (U, V)` float32, U: (m, r), V: (r, n); the tensor is (U @ V) reshaped to `shape`
              (conv weights are viewed as (out, in*kh*kw)).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


def position_dtype(numel: int) -> torch.dtype:
    """Positions of a tensor of `numel` entries: int32 below 2**31 (half of int64's memory)."""
    return torch.int32 if numel < 1 << 31 else torch.int64


def index_dtype(k: int) -> torch.dtype:
    """Indices into a codebook of `k` entries: int16 up to 32,768 (torch refuses int16 as an index, so it
    can never be taken for a uint8 mask), else int32."""
    return torch.int16 if k <= 1 << 15 else torch.int32


@dataclass
class TensorRecord:
    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype  # the original dtype; reconstruct returns this dtype
    values: torch.Tensor | None = None  # dense or kept values, 1-D
    # integer tensors: the methods make them `position_dtype` / `index_dtype`, the reader int64 (narrow for
    # the streaming path); index a torch tensor with them through `.long()`
    positions: torch.Tensor | None = None  # 1-D, sorted, unique flat indices of kept entries
    codebook: torch.Tensor | None = None  # float32, 1-D, k entries
    indices: torch.Tensor | None = None  # 1-D, values in [0, k)
    factors: tuple[torch.Tensor, torch.Tensor] | None = None  # (U, V) float32
    encoding: str = "huffman"  # how the format codes the integer streams: "huffman" or "raw"
    method: str = "dense"  # human label: dense, prune, quantize, prune+quantize, lowrank, ...
    stats: dict[str, Any] = field(default_factory=dict)  # per-method numbers for metrics.json

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    def reconstruct(self) -> torch.Tensor:
        """Dense tensor of `shape` and `dtype`, computed on the CPU so it is reproducible.

        Built a chunk of kept entries at a time (codebook lookup, cast, scatter): memory is the output plus
        a few MiB, and each entry's value is the same as a whole-tensor computation gives."""
        if self.factors is not None:
            u, v = self.factors
            dense = (u.float().cpu() @ v.float().cpu()).reshape(self.shape)
            return dense.to(self.dtype)
        if self.codebook is None:
            assert self.values is not None
            kept = self.values.cpu()
            if self.positions is None:
                return kept.to(self.dtype).reshape(self.shape)
        codebook = self.codebook.float().cpu() if self.codebook is not None else None
        indices = self.indices.cpu().reshape(-1) if self.indices is not None else None
        count = indices.numel() if indices is not None else kept.numel()
        positions = self.positions.cpu() if self.positions is not None else None
        if positions is not None and positions.dtype not in (torch.int32, torch.int64):
            positions = positions.long()  # a uint8 index would be a mask
        if positions is None:
            flat = torch.empty(self.numel, dtype=self.dtype)
        else:
            flat = torch.zeros(self.numel, dtype=self.dtype)
        for lo in range(0, count, _CHUNK):
            if codebook is not None:
                assert indices is not None
                part = codebook[indices[lo : lo + _CHUNK].to(torch.int64)].to(self.dtype)
            else:
                part = kept[lo : lo + _CHUNK].to(self.dtype)
            if positions is None:
                flat[lo : lo + part.numel()] = part
            else:
                flat[positions[lo : lo + _CHUNK]] = part
        return flat.reshape(self.shape)


_CHUNK = 1 << 20  # kept entries rebuilt at once
