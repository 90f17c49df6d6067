"""N:M semi-structured pruning: in every group of M consecutive weights along the input dimension, keep the N
largest magnitudes (2:4 is what sparse tensor cores run).

A tensor is read as rows of its first axis (a Linear's [out, in] along `in`, a conv's [out, in, kh, kw]
along the flattened in*kh*kw; a 1-D tensor is one row). A row whose length d is not a multiple of M ends in
a shorter group of d mod M weights that keeps its N largest (all of it when it has N or fewer): the row read
as padded with zeros that are never kept. Ties go to the lowest index, so a tensor always gives one mask.

Vectorized: one `topk` over a [rows, d/M, M] view of integer keys (the float32 magnitude's bits, which order
like the magnitudes, shifted left with the reversed position in the group below them: every key is distinct
and equal magnitudes rank by position). Rows are taken a chunk at a time to bound the int64 keys' memory.
"""

from __future__ import annotations

import torch

__all__ = ["group_keep", "pattern_positions"]

_CHUNK = 1 << 22  # weights keyed at once (8 bytes each)
_SHIFT = 8  # bits for the position in a group: M <= 256 (spec.MAX_GROUP)


def group_keep(n: int, m: int, fraction: float) -> int:
    """Weights kept per group of M at a fraction of the way from dense to N:M (iterative prune-retrain):
    M - floor(fraction * (M - N)), so 2:4 at 0.5 keeps 3 of 4 and at 1.0 keeps 2 of 4."""
    return m - int(fraction * (m - n) + 1e-9)


def _rows(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.reshape(tensor.shape[0] if tensor.dim() > 1 else 1, -1)


def pattern_positions(tensor: torch.Tensor, n: int, m: int, dtype: torch.dtype = torch.int64) -> torch.Tensor:
    """Sorted flat indices (as `dtype`, on the tensor's device) of the weights an N:M pattern keeps."""
    rows = _rows(tensor.detach())
    count, d = rows.shape
    if d == 0 or count == 0:
        return torch.zeros(0, dtype=dtype, device=tensor.device)
    groups = -(-d // m)
    per_chunk = max(1, _CHUNK // (groups * m))
    parts = []
    for lo in range(0, count, per_chunk):
        parts.append(_chunk_positions(rows[lo : lo + per_chunk], n, m, groups, lo * d).reshape(-1))
    return torch.cat(parts).to(dtype)


def _chunk_positions(rows: torch.Tensor, n: int, m: int, groups: int, offset: int) -> torch.Tensor:
    count, d = rows.shape
    bits = rows.float().abs().view(torch.int32).to(torch.int64)  # >= 0; ordered like the magnitudes
    pad = groups * m - d
    if pad:  # key -1 ranks below every weight: a shorter last group keeps its own weights first
        bits = torch.nn.functional.pad(bits, (0, pad), value=-1)
    keys = bits.view(count, groups, m) << _SHIFT
    keys |= torch.arange(m - 1, -1, -1, dtype=torch.int64, device=keys.device)  # ties: lowest index
    kept = torch.topk(keys, n, dim=-1, sorted=False).indices.sort(dim=-1).values
    del keys, bits
    kept += torch.arange(0, groups * m, m, device=kept.device).view(1, -1, 1)  # column in the row
    if 0 < d % m < n:  # a shorter last group "kept" padding: drop columns past the row's end
        kept = kept[:, :-1, :]
        tail = torch.arange((groups - 1) * m, d, device=kept.device).expand(count, -1)  # all of its own
        kept = torch.cat([kept.reshape(count, -1), tail], dim=1)
    starts = torch.arange(offset, offset + count * d, d, device=kept.device)  # each row's first flat index
    return kept.reshape(count, -1) + starts.view(-1, 1)
