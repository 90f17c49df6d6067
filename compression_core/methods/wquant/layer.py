"""One linear layer's weight on the integer grid: round-to-nearest, or GPTQ with the Hessian of its inputs.

GPTQ (Frantar et al. 2023) quantizes the columns of `W` (out, in) one at a time and spreads each column's
error over the columns not yet quantized, in proportion to the inverse Hessian `H = 2 X Xᵀ / n` of the
layer's inputs `X`, so that `||W X - Q X||²` stays small rather than `||W - Q||²`:

1. dead inputs (`H_jj = 0`) get `H_jj = 1` and a zero column; `H += λ mean(diag H) I` (`dampening` λ);
2. `U = chol(H⁻¹)ᵀ` (upper Cholesky factor of the inverse);
3. for each column j (in blocks of 128, updates to later blocks applied once per block):
   `q_j = quant(w_j)`, `e_j = (w_j - q_j) / U_jj`, `w_k -= e_j U_jk` for the columns k > j of the block;
4. with act-order the columns go in order of decreasing `H_jj` (the most used inputs first); the groups are
   then fixed from the original columns before the loop (static groups), so the checkpoint needs no
   column permutation (`g_idx`). Without it, each group's scale is taken from the already-updated columns
   when the loop reaches the group's first column, as in the reference implementation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from compression_core.errors import InputError
from compression_core.methods.wquant.grid import Grid, dequantize, group_params, quantize

__all__ = ["QuantizedWeight", "gptq", "rtn"]

BLOCK = 128


@dataclass
class QuantizedWeight:
    q: torch.Tensor  # (out, in) int8 integers on the grid (empty once `packed`)
    scale: torch.Tensor  # (out, groups)
    zero: torch.Tensor | None  # (out, groups) integers, asymmetric only
    loss: float  # GPTQ: the Hessian-weighted error it minimizes; RTN: the squared error
    row_loss: torch.Tensor | None = None  # GPTQ: the same per output row
    packed: torch.Tensor | None = None  # the integers packed into int32 words (`grid.pack_int32`)
    packed_shape: tuple[int, int] | None = None  # (out, in) of the packed integers

    @property
    def shape(self) -> tuple[int, int]:
        return self.packed_shape if self.packed_shape is not None else (self.q.shape[0], self.q.shape[1])

    def packed_form(self, bits: int) -> QuantizedWeight:
        """The same weight with its integers packed and the int8 copy dropped: a job holds every layer's
        integers until the checkpoint is written, and packed int4 takes half of int8's memory."""
        from compression_core.methods.wquant.grid import pack_int32

        return QuantizedWeight(
            self.q.new_empty(0),
            self.scale,
            self.zero,
            self.loss,
            self.row_loss,
            pack_int32(self.q, bits),
            self.shape,
        )

    def rows(self, start: int, stop: int) -> QuantizedWeight:
        """The rows `start:stop` (one layer of several stacked on a shared Hessian)."""
        zero = None if self.zero is None else self.zero[start:stop]
        part = None if self.row_loss is None else self.row_loss[start:stop]
        loss = float(part.sum()) if part is not None else self.loss
        return QuantizedWeight(self.q[start:stop], self.scale[start:stop], zero, loss, part)

    def dequantized(self) -> torch.Tensor:
        rows, cols = self.q.shape
        groups = self.scale.shape[1]
        q = self.q.float().reshape(rows, groups, cols // groups)
        zero = None if self.zero is None else self.zero.unsqueeze(-1)
        return dequantize(q, self.scale.unsqueeze(-1), zero).reshape(rows, cols)


def _group(cols: int, group: int | None, name: str) -> int:
    size = cols if group is None else group
    if cols % size:
        raise InputError(f"{name}: {cols} input features are not a multiple of group_size {size}")
    return size


def rtn(w: torch.Tensor, grid: Grid, group: int | None, name: str = "weight") -> QuantizedWeight:
    """Round-to-nearest: each group's scale from its own range (data-free)."""
    w = w.detach().float().cpu()
    rows, cols = w.shape
    size = _group(cols, group, name)
    g = w.reshape(rows, cols // size, size)
    scale, zero = group_params(g, grid)
    q = quantize(g, scale.unsqueeze(-1), None if zero is None else zero.unsqueeze(-1), grid)
    deq = dequantize(q, scale.unsqueeze(-1), None if zero is None else zero.unsqueeze(-1))
    loss = float(deq.sub_(g).square_().sum())  # deq is not used again: its buffer holds the error
    return QuantizedWeight(q.reshape(rows, cols).to(torch.int8), scale, zero, loss)


def gptq(
    w: torch.Tensor,
    hessian: torch.Tensor,
    grid: Grid,
    group: int | None,
    *,
    act_order: bool = False,
    dampening: float = 0.01,
    name: str = "weight",
) -> QuantizedWeight:
    """GPTQ of `w` (out, in) with `hessian` (in, in) of its inputs (see the module docstring)."""
    W = w.detach().float().cpu().clone()  # the solve runs on the CPU, whatever device the model is on
    H = hessian.detach().float().cpu().clone()
    rows, cols = W.shape
    size = _group(cols, group, name)
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    groups = cols // size
    scale = torch.empty(rows, groups)
    zero = None if grid.symmetric else torch.empty(rows, groups)
    static = act_order or group is None  # per channel: the row's scale from the whole row, once
    if static:
        s, z = group_params(W.reshape(rows, groups, size), grid)
        scale.copy_(s)
        if zero is not None and z is not None:
            zero.copy_(z)
    perm = torch.argsort(torch.diag(H), descending=True) if act_order else torch.arange(cols)
    W, H = W[:, perm], H[perm][:, perm]
    H += dampening * torch.mean(torch.diag(H)) * torch.eye(cols)
    try:
        U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    except RuntimeError:  # torch.linalg.LinAlgError: not positive definite even after dampening
        raise InputError(f"{name}: the inputs' Hessian is singular; raise wquant.dampening") from None
    column_group = (perm // size).tolist()  # the group of each (permuted) column
    Q = torch.zeros_like(W)
    loss = torch.zeros(rows)  # per row: layers stacked on one Hessian are split back by rows
    for i1 in range(0, cols, BLOCK):
        i2 = min(i1 + BLOCK, cols)
        W1 = W[:, i1:i2].clone()
        E1 = torch.zeros_like(W1)
        U1 = U[i1:i2, i1:i2]
        for i in range(i2 - i1):
            j = i1 + i
            g = column_group[j]
            if not static and j % size == 0:  # a group opens: its scale from the updated columns
                s, z = group_params(W1[:, i : i + size], grid)
                scale[:, g] = s
                if zero is not None and z is not None:
                    zero[:, g] = z
            col = W1[:, i]
            zg = None if zero is None else zero[:, g]
            q = quantize(col, scale[:, g], zg, grid)
            Q[:, j] = q
            err = (col - dequantize(q, scale[:, g], zg)) / U1[i, i]
            loss += err**2 / 2
            W1[:, i:] -= err.unsqueeze(1) * U1[i, i:].unsqueeze(0)
            E1[:, i] = err
        W[:, i2:] -= E1 @ U[i1:i2, i2:]
    inverse = torch.argsort(perm)
    return QuantizedWeight(Q[:, inverse].to(torch.int8), scale, zero, float(loss.sum()), loss)
