"""One rule's steps applied to one tensor, producing the `TensorRecord` the format stores."""

from __future__ import annotations

import time

import torch

from compression_core.errors import SpecError
from compression_core.methods.lowrank import factorize
from compression_core.methods.prune import keep_count, keep_positions
from compression_core.methods.quantize import quantize_values
from compression_core.records import TensorRecord
from compression_core.spec import Rule


def compress_tensor(
    name: str,
    tensor: torch.Tensor,
    rule: Rule,
    *,
    label: str = "rule",
    keep: int | None = None,
    device: str = "cpu",
) -> TensorRecord:
    """Run `rule`'s steps on `tensor`. `keep` overrides the prune step's κ (used for global pruning)."""
    shape = tuple(tensor.shape)
    record = TensorRecord(name=name, shape=shape, dtype=tensor.dtype, encoding=rule.encoding.value)
    work = tensor.detach().to(device)
    if rule.lowrank is not None:
        if tensor.ndim < 2:
            raise SpecError(f"{label}: tensor {name!r} of shape {shape} has no matrix view for lowrank")
        started = time.perf_counter()
        factored = factorize(work, rule.lowrank)
        record.stats["seconds"] = {"lowrank": time.perf_counter() - started}
        record.factors = (factored.left, factored.right)
        record.method = "lowrank"
        record.stats.update(factored.stats)
        return record

    values = work.reshape(-1)
    methods = []
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    if rule.prune is not None:
        kappa = keep if keep is not None else keep_count(rule.prune, tensor.numel())
        if kappa > tensor.numel():
            raise SpecError(
                f"{label}: keep={kappa} is larger than tensor {name!r} "
                f"({tensor.numel()} weights, shape {shape})"
            )
        positions = keep_positions(work, kappa)
        values = values[positions]
        record.positions = positions.cpu()
        record.stats.update(kept=int(positions.numel()), keep_requested=kappa)
        methods.append("prune")
        seconds["prune"] = time.perf_counter() - started
        started = time.perf_counter()
    elif rule.structured is not None:  # whole channels zeroed, shapes kept (methods/structured.py)
        from compression_core.methods.structured import structured_positions

        positions, removed = structured_positions(work, rule.structured, label=f"{label}: {name!r}")
        values = values[positions]
        record.positions = positions.cpu()
        record.stats.update(kept=int(positions.numel()), channels_removed=removed.tolist())
        methods.append("structured")
        seconds["structured"] = time.perf_counter() - started
        started = time.perf_counter()
    if rule.quantize is not None and values.numel() > 0:
        quantized = quantize_values(values, rule.quantize)
        record.codebook = quantized.codebook
        record.indices = quantized.indices
        record.stats.update(quantized.stats)
        methods.append("quantize")
        seconds["quantize"] = time.perf_counter() - started
    else:
        record.values = values.cpu().clone()
    record.method = "+".join(methods) or "dense"
    record.stats["seconds"] = seconds
    return record


def dense_record(name: str, tensor: torch.Tensor, *, float16: bool = False) -> TensorRecord:
    """An unselected tensor stored as it is, or float32/float64 values stored as float16 (dtype kept)."""
    values = tensor.detach().reshape(-1).cpu().clone()
    if float16 and tensor.dtype in (torch.float32, torch.float64):
        values = values.to(torch.float16)
    return TensorRecord(
        name=name,
        shape=tuple(tensor.shape),
        dtype=tensor.dtype,
        values=values,
        method="dense-fp16" if values.dtype != tensor.dtype else "dense",
    )
