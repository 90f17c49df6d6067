"""Fidelity to the uploaded model: how closely a model's outputs follow the upload's on the same inputs.

A job whose data has no labels (`x_*` arrays only), or whose model is not a classifier, cannot report an
error; it reports how far the compressed model `f_c` strays from the uploaded one `f_0` on the split that
results are reported on (X: its n samples; F = f(X), every sample's outputs stacked):

    relative_output_error = ||f_c(X) - f_0(X)||_F / ||f_0(X)||_F        (0 for the upload itself)
    top1_agreement        = mean over samples (and positions, for outputs (n, C, ...)) of
                            [argmax_C f_c(X) == argmax_C f_0(X)]          (1 for the upload itself)

The top-1 agreement needs a class axis: outputs (n, C, ...) with C > 1 (a classifier's logits, a segmenter's
per-pixel scores); for outputs (n,) or (n, 1) it is None. A zero reference norm gives 0 when the outputs
match and infinity otherwise. Jobs with labels report both too (`evaluation.after.fidelity`), beside
the error.

The reference outputs are computed once, before compression, and kept (`reference_outputs`, bounded by the
byte budget); `measure` then runs the compressed model batch by batch against them, summing the squared
differences, the squared reference and the agreements, so no second copy of the outputs is held.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from compression_core.budget import check_bytes

__all__ = ["Fidelity", "class_axis", "compare", "measure", "predict_top1", "reference_outputs"]

BATCH = 256


@dataclass(frozen=True)
class Fidelity:
    samples: int
    relative_output_error: float
    top1_agreement: float | None  # None: the outputs have no class axis
    output_shape: list[int]  # one sample's output shape

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def class_axis(output_shape: tuple[int, ...] | list[int]) -> bool:
    """Whether outputs of one sample's shape `output_shape` (no batch) have a class axis to agree on."""
    return len(output_shape) >= 1 and output_shape[0] > 1


@dataclass
class _Sums:
    """What the two formulas need, summed batch by batch."""

    samples: int = 0
    diff_sq: float = 0.0
    ref_sq: float = 0.0
    agree: int = 0
    positions: int = 0

    def add(self, reference: torch.Tensor, outputs: torch.Tensor) -> None:
        if reference.shape != outputs.shape:
            raise ValueError(
                f"outputs of shape {tuple(outputs.shape)} against a reference {tuple(reference.shape)}"
            )
        ref, out = reference.double(), outputs.double()
        self.samples += reference.shape[0]
        self.diff_sq += float((out - ref).square().sum())
        self.ref_sq += float(ref.square().sum())
        if class_axis(tuple(reference.shape[1:])):
            same = reference.argmax(dim=1) == outputs.argmax(dim=1)
            self.agree += int(same.sum())
            self.positions += same.numel()

    def result(self, output_shape: list[int]) -> Fidelity:
        diff, ref = math.sqrt(self.diff_sq), math.sqrt(self.ref_sq)
        error = diff / ref if ref > 0 else (0.0 if diff == 0 else math.inf)
        agreement = self.agree / self.positions if class_axis(output_shape) and self.positions else None
        return Fidelity(self.samples, error, agreement, output_shape)


def compare(reference: torch.Tensor, outputs: torch.Tensor) -> Fidelity:
    """Fidelity of `outputs` to `reference` (both (n, ...): every sample's outputs, in the same order)."""
    sums = _Sums()
    sums.add(reference, outputs)
    return sums.result(list(reference.shape[1:]))


def _device_of(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def _batches(model: nn.Module, x: torch.Tensor, batch_size: int) -> Any:
    device = _device_of(model)
    for start in range(0, len(x), batch_size):
        out = model(x[start : start + batch_size].to(device))
        if not isinstance(out, torch.Tensor):
            raise ValueError(f"the model returns {type(out).__name__}, not one tensor of outputs")
        yield out.detach().float().cpu()


@torch.no_grad()
def reference_outputs(
    model: nn.Module, x: torch.Tensor, *, what: str = "the reference outputs", batch_size: int = BATCH
) -> torch.Tensor:
    """The model's outputs (float32, on the CPU) for every sample of `x`, in eval mode. The first batch
    tells one sample's output size; the whole is checked against the byte budget before it is kept."""
    was_training = model.training
    model.eval()
    try:
        parts: list[torch.Tensor] = []
        for out in _batches(model, x, batch_size):
            if not parts:
                check_bytes(f"{what} ({len(x)} x {list(out.shape[1:])} float32)", 4 * len(x) * out[0].numel())
            parts.append(out)
    finally:
        model.train(was_training)
    if not parts:
        raise ValueError("cannot compute outputs of an empty split")
    return torch.cat(parts)


@torch.no_grad()
def measure(
    model: nn.Module, x: torch.Tensor, reference: torch.Tensor, *, batch_size: int = BATCH
) -> Fidelity:
    """Fidelity of `model` on `x` to the `reference` outputs (`reference_outputs` of the upload on `x`)."""
    if len(x) != len(reference):
        raise ValueError(f"{len(x)} inputs against {len(reference)} reference outputs")
    was_training = model.training
    model.eval()
    sums = _Sums()
    try:
        start = 0
        for out in _batches(model, x, batch_size):
            sums.add(reference[start : start + len(out)], out)
            start += len(out)
    finally:
        model.train(was_training)
    return sums.result(list(reference.shape[1:]))


@torch.no_grad()
def predict_top1(model: nn.Module, x: torch.Tensor, *, batch_size: int = BATCH) -> torch.Tensor:
    """The model's top-1 class (int64) for every sample of `x` (outputs (n, classes)), in eval mode: the
    labels a job takes from the upload when its data has none."""
    was_training = model.training
    model.eval()
    try:
        return torch.cat([out.argmax(dim=1) for out in _batches(model, x, batch_size)])
    finally:
        model.train(was_training)
