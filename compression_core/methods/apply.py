"""One rule's steps applied to one tensor, producing the `TensorRecord` the format stores.

The rule's steps run in order, each through its registered `apply` (see `methods/registry.py`): a step
stores what it computed in the record (positions, codebook, factors) and leaves the values the next step
works on. Whatever values are left and not coded by a codebook are stored as they are.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch

from compression_core.methods.base import StepContext, Work, resolve
from compression_core.methods.registry import step_method
from compression_core.records import TensorRecord

if TYPE_CHECKING:
    from compression_core.spec.model import RuleBase

__all__ = ["compress_tensor", "dense_record"]


def compress_tensor(
    name: str,
    tensor: torch.Tensor,
    rule: RuleBase,
    *,
    label: str = "rule",
    keep: int | None = None,
    device: str = "cpu",
) -> TensorRecord:
    """Run `rule`'s steps on `tensor`. `keep` overrides the prune step's κ (used for global pruning)."""
    record = TensorRecord(
        name=name, shape=tuple(tensor.shape), dtype=tensor.dtype, encoding=rule.encoding.value
    )
    work = tensor.detach().to(device)
    state = Work(tensor=work, values=work.reshape(-1), record=record)
    context = StepContext(name=name, label=label, keep=keep, device=device)
    methods: list[str] = []
    seconds: dict[str, float] = {}
    for step in rule.steps:
        started = time.perf_counter()
        if resolve(step_method(step.type).apply)(step, state, context) is False:
            continue  # nothing to do (e.g. a codebook for zero kept values)
        methods.append(step.type)
        seconds[step.type] = time.perf_counter() - started
    if record.factors is None and record.codebook is None:
        record.values = state.values.cpu().clone()
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
