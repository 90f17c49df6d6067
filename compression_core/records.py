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


@dataclass
class TensorRecord:
    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype  # the original dtype; reconstruct returns this dtype
    values: torch.Tensor | None = None  # dense or kept values, 1-D
    positions: torch.Tensor | None = None  # int64, 1-D, sorted, unique flat indices of kept entries
    codebook: torch.Tensor | None = None  # float32, 1-D, k entries
    indices: torch.Tensor | None = None  # int64, 1-D, values in [0, k)
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
        """Dense tensor of `shape` and `dtype`, computed on the CPU so it is reproducible."""
        if self.factors is not None:
            u, v = self.factors
            dense = (u.float().cpu() @ v.float().cpu()).reshape(self.shape)
            return dense.to(self.dtype)
        if self.codebook is not None:
            assert self.indices is not None
            kept = self.codebook.float().cpu()[self.indices.cpu()]
        else:
            assert self.values is not None
            kept = self.values.cpu()
        if self.positions is None:
            return kept.to(self.dtype).reshape(self.shape)
        flat = torch.zeros(self.numel, dtype=self.dtype)
        flat[self.positions.cpu()] = kept.to(self.dtype)
        return flat.reshape(self.shape)
