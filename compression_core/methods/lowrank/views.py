"""Reshaping weights apart from the methods: a flat vector for pruning and k-means, a matrix for low-rank.

The matrix view of a convolution weight (out, in, *kernel) is (out, in * prod(kernel)), the layout the
records' low-rank factors assume and the LC toolkit's `scheme_1`.
"""

from __future__ import annotations

import torch


def flat_view(tensor: torch.Tensor) -> torch.Tensor:
    """A 1-D row-major view (copy only when the tensor is not contiguous)."""
    return tensor.reshape(-1)


def matrix_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """(rows, cols) of the matrix view; ValueError for tensors with fewer than 2 dimensions."""
    if len(shape) < 2:
        raise ValueError(f"a tensor of shape {tuple(shape)} has no matrix view (needs at least 2 dimensions)")
    cols = 1
    for size in shape[1:]:
        cols *= size
    return shape[0], cols


def matrix_view(tensor: torch.Tensor) -> torch.Tensor:
    """(out, everything else): the linear weight itself, a conv weight as (out, in*kh*kw)."""
    return tensor.reshape(matrix_shape(tuple(tensor.shape)))


def from_matrix(matrix: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of `matrix_view`."""
    return matrix.reshape(shape)
