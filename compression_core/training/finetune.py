"""Retrain a compressed model with its structure held, and Deep Compression's iterative prune-retrain.

Each compressed tensor's module weight is replaced (via `torch.nn.utils.parametrize`) by a function of
exactly the numbers its `TensorRecord` stores, so training can only change those numbers:

- pruned, raw kept values:  weight = scatter(positions, values)      -> trains `values`; pruned entries
  are structurally zero (there is nothing to update), so they stay exactly 0.0 without masking tricks;
- codebook (+ positions):   weight = scatter(positions, codebook[indices]) -> trains the k centroids; the
  autograd of `codebook[indices]` sums the gradients of all weights sharing a centroid, which is Deep
  Compression's centroid update; indices and positions never change;
- low-rank:                 weight = (U @ V).reshape(shape)           -> trains the factors, shapes fixed.
Dense records and parameters without a record train as usual (biases, batch norm, ...).

The result is a new list of records with the same structure (positions, indices, shapes) and new numbers.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.data import TensorDataset

from compression_core.errors import Cancelled, SpecError
from compression_core.records import TensorRecord
from compression_core.spec.fields import OptimizerName, RetrainConfig
from compression_core.training.loop import EpochCallback, EpochStats, train_epochs

__all__ = [
    "EpochStats",
    "FinetuneResult",
    "OptimizerName",
    "RetrainConfig",
    "finetune",
    "iterative_prune",
    "magnitude_prune",
    "train_epochs",
]

log = logging.getLogger(__name__)


@dataclass
class FinetuneResult:
    records: list[TensorRecord]
    history: list[EpochStats] = field(default_factory=list)


# --- parametrizations: a weight computed from what the record stores --------------------------------------


class _Scatter(nn.Module):
    """weight = kept values scattered into zeros at `positions` (or reshaped when dense)."""

    def __init__(self, shape: Sequence[int], positions: torch.Tensor | None):
        super().__init__()
        self.shape = tuple(shape)
        self.numel = math.prod(self.shape)
        self.positions: torch.Tensor | None
        self.register_buffer("positions", positions.clone() if positions is not None else None)

    def place(self, kept: torch.Tensor) -> torch.Tensor:
        if self.positions is None:
            return kept.reshape(self.shape)
        flat = kept.new_zeros(self.numel).index_put((self.positions,), kept)
        return flat.reshape(self.shape)


class _KeptValues(_Scatter):
    def __init__(self, record: TensorRecord):
        super().__init__(record.shape, record.positions)
        assert record.values is not None
        self._init = record.values.detach().float().clone()

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        return self.place(values)

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        return self._init.to(weight.device)


class _Codebook(_Scatter):
    def __init__(self, record: TensorRecord):
        super().__init__(record.shape, record.positions)
        assert record.codebook is not None and record.indices is not None
        self.indices: torch.Tensor
        self.register_buffer("indices", record.indices.clone().long())
        self._init = record.codebook.detach().float().clone()

    def forward(self, codebook: torch.Tensor) -> torch.Tensor:
        return self.place(codebook[self.indices])

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        return self._init.to(weight.device)


class _LowRank(nn.Module):
    def __init__(self, record: TensorRecord):
        super().__init__()
        assert record.factors is not None
        self.shape = tuple(record.shape)
        self._init = tuple(f.detach().float().clone() for f in record.factors)

    def forward(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (u @ v).reshape(self.shape)

    def right_inverse(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return tuple(f.to(weight.device) for f in self._init)  # type: ignore[return-value]


def _parametrization_for(record: TensorRecord) -> nn.Module | None:
    if record.factors is not None:
        return _LowRank(record)
    if record.codebook is not None:
        return _Codebook(record)
    if record.positions is not None:
        return _KeptValues(record)
    return None  # dense: the parameter itself is what is stored


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str, bool]:
    """(module, attribute, is_parameter) of a state-dict name; buffers (batch-norm statistics) are not
    trained but may have records too."""
    prefix, _, attr = name.rpartition(".")
    try:
        module = model.get_submodule(prefix) if prefix else model
    except AttributeError:
        raise SpecError(f"record {name!r} names no module of the model") from None
    if isinstance(getattr(module, attr, None), nn.Parameter):
        return module, attr, True
    if attr in module._buffers and module._buffers[attr] is not None:
        return module, attr, False
    raise SpecError(f"record {name!r} names no parameter or buffer of the model")


def _originals(module: nn.Module, attr: str) -> list[torch.Tensor]:
    plist = module.parametrizations[attr]  # type: ignore[index]
    if hasattr(plist, "original"):
        return [plist.original.detach()]
    tensors, i = [], 0
    while hasattr(plist, f"original{i}"):  # right_inverse returned several tensors (low-rank factors)
        tensors.append(getattr(plist, f"original{i}").detach())
        i += 1
    return tensors


def _updated(record: TensorRecord, tensors: list[torch.Tensor] | None, dense: torch.Tensor) -> TensorRecord:
    stats = dict(record.stats, finetuned=True)
    if record.factors is not None:
        assert tensors is not None
        u, v = (t.cpu().float().clone() for t in tensors)
        return dataclasses.replace(record, factors=(u, v), stats=stats)
    if record.codebook is not None:
        assert tensors is not None
        return dataclasses.replace(record, codebook=tensors[0].cpu().float().clone(), stats=stats)
    assert record.values is not None
    source = tensors[0] if tensors is not None else dense.detach().flatten()
    return dataclasses.replace(record, values=source.cpu().to(record.values.dtype).clone(), stats=stats)


# --- retraining with the structure held -----------------------------------------------------------------


def finetune(
    model: nn.Module,
    records: Sequence[TensorRecord],
    train_set: TensorDataset,
    config: RetrainConfig,
    *,
    eval_set: TensorDataset | None = None,
    device: str | torch.device = "cpu",
    on_epoch: EpochCallback | None = None,
    should_cancel: Callable[[], bool] | None = None,
    stage: str = "finetune",
    trainer: Callable[..., list[EpochStats]] = train_epochs,
) -> FinetuneResult:
    """Retrain `model` whose compressed tensors are `records`, keeping each record's structure.
    `trainer` runs the epochs (`train_epochs`' signature; a language model's: `training/lm.py`).

    On return the model holds plain weights equal to `reconstruct()` of the returned records.
    """
    attached: list[tuple[TensorRecord, nn.Module, str, bool]] = []
    buffers: list[tuple[TensorRecord, nn.Module, str]] = []
    try:
        for record in records:
            module, attr, is_param = _owner(model, record.name)
            tensor = getattr(module, attr)
            if tuple(tensor.shape) != tuple(record.shape):
                raise SpecError(
                    f"record {record.name!r} has shape {record.shape}, the model {tuple(tensor.shape)}"
                )
            with torch.no_grad():
                tensor.copy_(record.reconstruct().to(tensor.device, tensor.dtype))
            if not is_param:
                buffers.append((record, module, attr))
                continue
            parametrization = _parametrization_for(record)
            if parametrization is not None:
                parametrize.register_parametrization(module, attr, parametrization, unsafe=True)
            attached.append((record, module, attr, parametrization is not None))
        history = trainer(
            model,
            train_set,
            config,
            eval_set=eval_set,
            device=device,
            on_epoch=on_epoch,
            should_cancel=should_cancel,
            stage=stage,
        )
        new: dict[str, TensorRecord] = {}
        for record, module, attr, parametrized in attached:
            tensors = _originals(module, attr) if parametrized else None
            new[record.name] = _updated(record, tensors, getattr(module, attr))
        for record, module, attr in buffers:  # running statistics moved while training; keep them if dense
            dense = record.positions is None and record.codebook is None and record.factors is None
            new[record.name] = _updated(record, None, getattr(module, attr)) if dense else record
    finally:
        for _record, module, attr, parametrized in attached:
            if parametrized and parametrize.is_parametrized(module, attr):
                parametrize.remove_parametrizations(module, attr, leave_parametrized=True)
    updated = [new[record.name] for record in records]
    for record in updated:
        module, attr, _ = _owner(model, record.name)
        tensor = getattr(module, attr)
        with torch.no_grad():  # exactly what the records store (e.g. after a cast back to float16 values)
            tensor.copy_(record.reconstruct().to(tensor.device, tensor.dtype))
    return FinetuneResult(records=updated, history=history)


# --- iterative pruning ------------------------------------------------------------------------------------

PruneFn = Callable[[str, torch.Tensor, int], TensorRecord]


def magnitude_prune(name: str, tensor: torch.Tensor, keep: int) -> TensorRecord:
    """Keep the `keep` largest-magnitude entries (ties broken by position) as raw float32 values."""
    flat = tensor.detach().cpu().flatten()
    keep = max(1, min(keep, flat.numel()))
    order = torch.argsort(flat.abs(), descending=True, stable=True)
    positions = torch.sort(order[:keep]).values
    return TensorRecord(
        name=name,
        shape=tuple(tensor.shape),
        dtype=tensor.dtype,
        values=flat[positions].float().clone(),
        positions=positions,
        method="prune",
        stats={"kept": keep, "kept_fraction": keep / flat.numel()},
    )


def iterative_prune(
    model: nn.Module,
    keep_fractions: Mapping[str, float],
    schedule: Sequence[float],
    train_set: TensorDataset,
    config: RetrainConfig,
    *,
    eval_set: TensorDataset | None = None,
    device: str | torch.device = "cpu",
    prune_fn: PruneFn = magnitude_prune,
    on_epoch: EpochCallback | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> FinetuneResult:
    """Deep Compression's prune-retrain loop: at step i every named tensor is pruned to sparsity
    `schedule[i] * (1 - keep_fraction)` (schedule rising to 1.0) and the model retrained with the mask
    held. Each step prunes the current weights, so kept sets shrink monotonically."""
    if not schedule or any(not 0.0 < s <= 1.0 for s in schedule) or list(schedule) != sorted(schedule):
        raise SpecError("the pruning schedule must be a rising list of fractions in (0, 1]")
    params = dict(model.named_parameters())
    missing = [n for n in keep_fractions if n not in params]
    if missing:
        raise SpecError(f"iterative pruning names no parameters {missing}")
    history: list[EpochStats] = []
    records: list[TensorRecord] = []
    for i, fraction in enumerate(schedule, start=1):
        if should_cancel is not None and should_cancel():
            raise Cancelled("cancelled between pruning iterations")
        params = dict(model.named_parameters())
        records = []
        for name, keep_fraction in keep_fractions.items():
            weight = params[name].detach()
            sparsity = fraction * (1.0 - keep_fraction)
            records.append(prune_fn(name, weight, max(1, round(weight.numel() * (1.0 - sparsity)))))
        result = finetune(
            model,
            records,
            train_set,
            config,
            eval_set=eval_set,
            device=device,
            on_epoch=on_epoch,
            should_cancel=should_cancel,
            stage=f"prune {i}/{len(schedule)}",
        )
        records, history = result.records, history + result.history
    return FinetuneResult(records=records, history=history)
