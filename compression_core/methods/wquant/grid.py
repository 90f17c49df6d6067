"""The integer grid of weight-only quantization, and compressed-tensors' int32 packing.

For `b` bits the integers run from `qmin = -2^(b-1)` to `qmax = 2^(b-1) - 1`. Each row of a linear weight
(out_features, in_features) is cut into groups of `g` columns (per channel: one group of all columns); each
group has a scale `s` (and, asymmetric, a zero point `z`):

- symmetric: `s = max|w| / ((2^b - 1) / 2)`, `q = clamp(round(w / s), qmin, qmax)`, `w' = q s`;
- asymmetric: `lo = min(min w, 0)`, `hi = max(max w, 0)`, `s = (hi - lo) / (2^b - 1)`,
  `z = clamp(round(qmin - lo / s), qmin, qmax)`, `q = clamp(round(w / s) + z, qmin, qmax)`, `w' = (q - z) s`.

A zero scale (an all-zero group) becomes the dtype's eps. These are the conventions of compressed-tensors'
`calculate_qparams` and `quantize`, so the checkpoint it reads back dequantizes to exactly `w'`.

Packing (`pack-quantized`): each integer is offset by `2^(b-1)` to be unsigned, and the values of a row are
laid end to end, `b` bits each, little-endian within int32 words (value `i` starts at bit `i b`): a row of
`n` values takes `ceil(n b / 32)` words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["Grid", "dequantize", "group_params", "pack_int32", "quantize", "unpack_int32"]


@dataclass(frozen=True)
class Grid:
    bits: int
    symmetric: bool = True
    # the dtype scales are stored in (the weight's, as compressed-tensors does): scales are rounded to it
    # before use, so the checkpoint dequantizes to exactly the weights evaluated here
    scale_dtype: torch.dtype = torch.float32

    @property
    def qmin(self) -> int:
        return -(1 << (self.bits - 1))

    @property
    def qmax(self) -> int:
        return (1 << (self.bits - 1)) - 1


def group_params(w: torch.Tensor, grid: Grid) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scales (and zero points) of the rows of `w` (..., n): one per row, over its last dimension."""
    steps = (1 << grid.bits) - 1
    eps = torch.finfo(w.dtype).eps
    if grid.symmetric:
        scale = (w.abs().amax(dim=-1) / (steps / 2)).to(grid.scale_dtype).float()
        return torch.where(scale == 0, torch.full_like(scale, eps), scale), None
    lo = torch.clamp(w.amin(dim=-1), max=0.0)
    hi = torch.clamp(w.amax(dim=-1), min=0.0)
    scale = ((hi - lo) / steps).to(grid.scale_dtype).float()
    scale = torch.where(scale == 0, torch.full_like(scale, eps), scale)
    zero = torch.clamp(torch.round(grid.qmin - lo / scale), grid.qmin, grid.qmax)
    return scale, zero


def quantize(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None, grid: Grid) -> torch.Tensor:
    """Integers of `w` on the grid (`scale`/`zero` broadcast against `w`), as float values."""
    q = torch.div(w, scale).round_()  # one new tensor, rounded and clamped in place
    if zero is not None:
        q.add_(zero)
    return q.clamp_(grid.qmin, grid.qmax)


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None) -> torch.Tensor:
    return (q - zero) * scale if zero is not None else q * scale


def pack_int32(q: torch.Tensor, bits: int) -> torch.Tensor:
    """Rows of integers in [-2^(b-1), 2^(b-1)) packed densely into int32 words (see the module docstring)."""
    rows, cols = q.shape
    words = math.ceil(cols * bits / 32)
    if 32 % bits == 0:  # 2, 4, 8 bits: whole values per word; one shift and one sum over a (rows, words, k)
        # view, in int32: the fields do not overlap, so the sum is their bitwise or (the top one wraps into
        # the sign bit, which is the bit pattern wanted)
        per_word = 32 // bits
        values32 = q.to(torch.int32).add_(1 << (bits - 1)).bitwise_and_((1 << bits) - 1)
        if cols % per_word:
            values32 = torch.nn.functional.pad(values32, (0, words * per_word - cols))
        values32 = values32.view(rows, words, per_word)
        return (values32 << torch.arange(0, 32, bits, dtype=torch.int32)).sum(-1, dtype=torch.int32)
    values = (q.to(torch.int64) + (1 << (bits - 1))) & ((1 << bits) - 1)
    starts = torch.arange(cols, dtype=torch.int64) * bits
    word, offset = starts // 32, starts % 32
    out = torch.zeros(rows, words + 1, dtype=torch.int64)
    out.index_add_(1, word, values << offset)  # bits that fit in the value's first word
    spill = offset + bits - 32
    over = spill > 0
    if bool(over.any()):  # a value across a word boundary: its high bits open the next word
        out.index_add_(1, word[over] + 1, values[:, over] >> (bits - spill[over]))
    out = out[:, :words] & 0xFFFFFFFF
    return torch.where(out >= 1 << 31, out - (1 << 32), out).to(torch.int32)


def unpack_int32(packed: torch.Tensor, bits: int, cols: int) -> torch.Tensor:
    """The inverse of `pack_int32`: (rows, cols) integers as int8."""
    words = packed.to(torch.int64) & 0xFFFFFFFF
    words = torch.cat([words, torch.zeros(words.shape[0], 1, dtype=torch.int64)], dim=1)
    starts = torch.arange(cols, dtype=torch.int64) * bits
    word, offset = starts // 32, starts % 32
    both = words[:, word] | (words[:, word + 1] << 32)
    values = (both >> offset) & ((1 << bits) - 1)
    return (values - (1 << (bits - 1))).to(torch.int8)
