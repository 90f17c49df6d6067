"""Per-layer rows of the report, from the metrics dict and, where it is silent, from the tensors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from compression_core.report.headline import lookup

if TYPE_CHECKING:
    import torch


@dataclass
class LayerRow:
    name: str
    method: str = ""
    shape: tuple[int, ...] | None = None
    params: int | None = None
    nonzero: int | None = None
    bits_before: float | None = None
    bits_after: float | None = None
    rel_error: float | None = None

    @property
    def sparsity(self) -> float | None:
        if self.params is None or self.nonzero is None or self.params == 0:
            return None
        return 1.0 - self.nonzero / self.params

    @property
    def ratio(self) -> float | None:
        if not self.bits_before or not self.bits_after:
            return None
        return self.bits_before / self.bits_after

    @property
    def bits_per_weight(self) -> float | None:
        if self.bits_after is None or not self.params:
            return None
        return self.bits_after / self.params


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _layer_docs(metrics: Mapping[str, Any] | None) -> list[tuple[str, Mapping[str, Any]]]:
    """(name, per-layer dict) pairs from `layers`/`tensors`, stored either as a list or a name-keyed dict."""
    section = lookup(metrics, ("layers",), ("tensors",), ("per_layer",), ("per_tensor",))
    if isinstance(section, Mapping):
        return [(str(k), v) for k, v in section.items() if isinstance(v, Mapping)]
    if isinstance(section, list):
        return [(str(v.get("name", i)), v) for i, v in enumerate(section) if isinstance(v, Mapping)]
    return []


def _method(doc: Mapping[str, Any]) -> str:
    method = str(doc.get("method") or "")
    extra = []
    if doc.get("codebook_size") is not None:
        extra.append(f"k={doc['codebook_size']}")
    if doc.get("rank") is not None:
        extra.append(f"r={doc['rank']}")
    return f"{method} ({', '.join(extra)})" if extra else method


def _from_doc(name: str, doc: Mapping[str, Any]) -> LayerRow:
    """A row from one entry of metrics["tensors"] (compression_core.metrics.tensor_metrics)."""
    shape = doc.get("shape")
    params = _int(lookup(doc, ("params",), ("numel",)))
    if params is None and isinstance(shape, list | tuple):
        params = 1
        for s in shape:
            params *= int(s)
    bits = doc.get("bits")
    if isinstance(bits, Mapping):
        before = _float(lookup(bits, ("original",), ("dense_fp32",)))
        # what the .bin spends; before encoding, the last stage's estimate
        after = _float(lookup(bits, ("coded",), ("lowrank",), ("quantized",), ("pruned",), ("dense_stored",)))
    else:
        before = _float(lookup(doc, ("bits_before",), ("original_bits",)))
        after = _float(lookup(doc, ("bits_after",), ("coded_bits",))) or _float(bits)
    return LayerRow(
        name=name,
        method=_method(doc),
        shape=tuple(int(s) for s in shape) if isinstance(shape, list | tuple) else None,
        params=params,
        nonzero=_int(lookup(doc, ("nonzeros",), ("nonzero",))),
        bits_before=before,
        bits_after=after,
        rel_error=_float(doc.get("rel_error")),
    )


def layer_rows(
    metrics: Mapping[str, Any] | None,
    before: Mapping[str, torch.Tensor] | None = None,
    after: Mapping[str, torch.Tensor] | None = None,
) -> list[LayerRow]:
    """One row per tensor: what metrics says, completed from the tensors (counts, dense bits, non-zeros)."""
    rows = {name: _from_doc(name, doc) for name, doc in _layer_docs(metrics)}
    for name in list(before or {}) + [n for n in (after or {}) if n not in (before or {})]:
        rows.setdefault(name, LayerRow(name=name))
    for name, row in rows.items():
        ref = (before or {}).get(name)
        if ref is None:
            ref = (after or {}).get(name)
        if ref is not None:
            if row.shape is None:
                row.shape = tuple(ref.shape)
            if row.params is None:
                row.params = int(ref.numel())
            if row.bits_before is None and before is not None and name in before:
                row.bits_before = float(ref.numel() * ref.element_size() * 8)
        if row.nonzero is None and after is not None and name in after:
            row.nonzero = int(after[name].count_nonzero())
    return list(rows.values())
