"""Counting what compression bought: parameters, bits per stage, errors, entropy, and the LC toolkit's ratio.

Per tensor (`tensor_metrics`):
- `params`: entries of the tensor; `kept`: stored entries (kept weights when pruned, else all);
  `nonzeros`: non-zero entries of the reconstruction; `codebook_size`, `rank` where they apply.
- `bits`: `original` (entries x bits of the dtype), `dense_fp32` (32 per entry), then after each stage:
  `pruned` = gap-coded positions + 32 per kept value, `quantized` = positions (if pruned) + ceil(log2 k) per
  index + 32 per codebook entry, `lowrank` = 32 per factor entry, and `coded` = the bits the .bin really
  spends on the tensor (the format's StreamStats, headers included), added after encoding.
- `rel_error` = ||W - W'||_F / ||W||_F (0 when both are 0).
- LC counting (`lc`), for weight tensors only (biases, norm parameters and integer buffers are not
  counted, as in the LC toolkit's reports):
    params: pruned -> κ; quantized -> n assignments + k codebook entries (n = κ when pruned first);
            low-rank -> r (m + n) factor entries; unselected weights -> all their entries.
    bits:   pruned -> G(b*) + 32 κ, with G(b) = b (κ + F(b)) the cost of b-bit position gaps, where the gap
            before a kept weight is the number of zeros skipped since the previous one (d_0 = p_0),
            code 2^b - 1 is reserved for a filler that skips 2^b - 1 positions, so
            F(b) = sum_i floor(d_i / (2^b - 1)), and b* minimizes G(b) over b in 2..32;
            quantized -> ceil(log2 k) n + 32 k (+ G(b*) when pruned first); low-rank -> 32 r (m + n);
            unselected weights -> their stored bits (32 per float32 entry, 16 when stored as float16).
  Totals: lc_ratio = 32 * (sum of the counted tensors' entries) / (sum of their LC bits).
Whole model (`summarize`): stored ratio = original bits of every tensor / bits of the whole .bin file.
When the job changed the model's shapes (physical structured pruning), "original" is the uploaded model
(`upload_totals`), not the smaller one the methods compressed: the ratio is what the user's file shrank by.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compression_core.coding.positions import gap_histogram
from compression_core.records import TensorRecord
from compression_core.select import is_weight_tensor

GAP_WIDTHS = range(2, 33)


def dtype_bits(dtype: torch.dtype) -> int:
    if dtype == torch.bool:
        return 8
    return torch.empty((), dtype=dtype).element_size() * 8


def gap_bits(positions: torch.Tensor | np.ndarray, widths: Iterable[int] = GAP_WIDTHS) -> tuple[int, int]:
    """(bits, width) of the cheapest fixed-width gap coding of sorted flat positions (see module doc).

    `widths` must be ascending: once a width needs no filler, wider ones only cost more, so we stop.
    """
    pos = np.asarray(positions)
    if pos.size == 0:
        return 0, 0
    # the entries skipped before each kept one, as a histogram (no per-position arrays of the tensor)
    skipped, counts = gap_histogram(pos.reshape(-1))
    largest = int(skipped[-1])
    best: tuple[int, int] | None = None
    for width in widths:
        escape = (1 << width) - 1
        fillers = int(np.sum(counts * (skipped // escape))) if largest >= escape else 0
        bits = width * (pos.size + fillers)
        if best is None or bits < best[0]:
            best = (bits, width)
        if fillers == 0:
            break  # wider codes need no fillers either, so they only cost more
    assert best is not None
    return best


def index_bits(k: int) -> int:
    return math.ceil(math.log2(k)) if k > 1 else 0


def stage_bits(record: TensorRecord) -> dict[str, int]:
    """Bits after each stage, from the record (format-independent; see the module docstring)."""
    return _stage_bits_and_gap_width(record)[0]


def _stage_bits_and_gap_width(record: TensorRecord) -> tuple[dict[str, int], int | None]:
    n = record.numel
    bits: dict[str, int] = {"original": n * dtype_bits(record.dtype), "dense_fp32": 32 * n}
    if record.factors is not None:
        u, v = record.factors
        bits["lowrank"] = 32 * (u.numel() + v.numel())
        return bits, None
    position_bits, width = 0, None
    if record.positions is not None:
        position_bits, width = gap_bits(record.positions)
        kept = int(record.positions.numel())
        bits["pruned"] = position_bits + 32 * kept
    if record.codebook is not None:
        assert record.indices is not None
        k = int(record.codebook.numel())
        bits["quantized"] = position_bits + index_bits(k) * int(record.indices.numel()) + 32 * k
    if record.method.startswith("dense") and record.values is not None:
        bits["dense_stored"] = int(record.values.numel()) * dtype_bits(record.values.dtype)
    return bits, width


def lc_counts(name: str, original: torch.Tensor, record: TensorRecord) -> dict[str, Any]:
    """LC-toolkit parameter and bit counts of one tensor (zero and `counted: False` for non-weights)."""
    if not is_weight_tensor(name, original):
        return {"counted": False, "params": 0, "bits": 0, "original_params": 0}
    bits, width = _stage_bits_and_gap_width(record)
    if record.factors is not None:
        u, v = record.factors
        params, lc_bits = u.numel() + v.numel(), bits["lowrank"]
    elif record.codebook is not None:
        assert record.indices is not None
        params, lc_bits = int(record.indices.numel()) + int(record.codebook.numel()), bits["quantized"]
    elif record.positions is not None:
        params, lc_bits = int(record.positions.numel()), bits["pruned"]
    else:
        params, lc_bits = record.numel, bits.get("dense_stored", bits["dense_fp32"])
    result: dict[str, Any] = {
        "counted": True,
        "params": int(params),
        "bits": int(lc_bits),
        "original_params": record.numel,
    }
    if width is not None:
        result["gap_width"] = width
    return result


_CHUNK = 1 << 20  # elements per step of the norms: a few MiB of float temporaries, not 3 copies of the tensor


def _wide(tensor: torch.Tensor, double: bool) -> torch.Tensor:
    return tensor.double() if double else tensor.float()


def norm_and_error(original: torch.Tensor, reconstructed: torch.Tensor) -> tuple[float, float]:
    """(||W||_F, ||W - W'||_F / ||W||_F), summed chunk by chunk in float32 (float64 if either is)."""
    a, b = original.detach().reshape(-1), reconstructed.detach().reshape(-1)
    double = original.dtype == torch.float64 or reconstructed.dtype == torch.float64
    norm_sq = diff_sq = 0.0
    for start in range(0, a.numel(), _CHUNK):
        x, y = _wide(a[start : start + _CHUNK], double), _wide(b[start : start + _CHUNK], double)
        norm_sq += float(torch.linalg.vector_norm(x)) ** 2
        diff_sq += float(torch.linalg.vector_norm(x - y)) ** 2
    norm, diff = math.sqrt(norm_sq), math.sqrt(diff_sq)
    if norm == 0.0:
        return norm, 0.0 if diff == 0.0 else math.inf
    return norm, diff / norm


def _count_nonzero(tensor: torch.Tensor) -> int:
    flat = tensor.detach().reshape(-1)
    return sum(int(torch.count_nonzero(flat[lo : lo + _CHUNK])) for lo in range(0, flat.numel(), _CHUNK))


def relative_error(original: torch.Tensor, reconstructed: torch.Tensor) -> float:
    return norm_and_error(original, reconstructed)[1]


def record_summary(record: TensorRecord) -> dict[str, Any]:
    """What can be said of a record alone (no original tensor): for `mcs inspect` and `tensor_metrics`."""
    kept = int(record.positions.numel()) if record.positions is not None else record.numel
    return {
        "name": record.name,
        "shape": list(record.shape),
        "dtype": str(record.dtype).removeprefix("torch."),
        "method": record.method,
        "encoding": record.encoding,
        "params": record.numel,
        "kept": kept,
        "codebook_size": int(record.codebook.numel()) if record.codebook is not None else None,
        "rank": int(record.factors[0].shape[1]) if record.factors is not None else None,
        "bits": stage_bits(record),
    }


def tensor_metrics(
    name: str,
    original: torch.Tensor,
    record: TensorRecord,
    rule: str | None,
    reconstructed: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Everything metrics.json says about one tensor before encoding (`reconstructed`: the record's dense
    tensor when the caller already has it, e.g. decoded from its bytes)."""
    if reconstructed is None:
        reconstructed = record.reconstruct()
    norm, error = norm_and_error(original, reconstructed)
    entry = record_summary(record)
    entry.update(
        name=name,
        rule=rule,
        nonzeros=_count_nonzero(reconstructed),
        rel_error=error,
        norm=norm,
        lc=lc_counts(name, original, record),
        stats=_jsonable(record.stats),
    )
    return entry


def add_stream_stats(entry: dict[str, Any], streams: Sequence[Any]) -> None:
    """Attach the format's per-stream numbers and the coded bits / ratio of the tensor."""
    entry["streams"] = [
        {
            "kind": s.kind,
            "count": int(s.count),
            "bits": int(s.bits),
            "entropy_bits": None if s.entropy_bits is None else float(s.entropy_bits),
            "coding": s.coding,
        }
        for s in streams
    ]
    coded = sum(int(s.bits) for s in streams)
    entry["bits"]["coded"] = coded
    entry["ratio"] = entry["bits"]["original"] / coded if coded else None
    entry["bits_per_weight"] = coded / entry["params"] if entry["params"] else None


def upload_totals(state_dict: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """What `summarize` counts as "original" for a model: its bits, entries and LC-counted weight entries."""
    return {
        "original_bits": sum(t.numel() * dtype_bits(t.dtype) for t in state_dict.values()),
        "original_params": sum(t.numel() for t in state_dict.values()),
        "lc_original_params": sum(t.numel() for n, t in state_dict.items() if is_weight_tensor(n, t)),
    }


def summarize(
    entries: Sequence[Mapping[str, Any]],
    bin_bytes: int | None = None,
    upload: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Whole-model totals: parameters, bits per stage, LC counting and, with the .bin size, the ratio.

    `upload` (`upload_totals` of the uploaded model) replaces the entries' own originals when the job
    changed the shapes, so ratios and sizes compare with the file the user sent."""
    original_bits = sum(e["bits"]["original"] for e in entries)
    counted = [e["lc"] for e in entries if e["lc"]["counted"]]
    lc_bits = sum(c["bits"] for c in counted)
    lc_original = sum(c["original_params"] for c in counted)
    original_params = sum(e["params"] for e in entries)
    if upload is not None:
        original_bits = upload["original_bits"]
        lc_original = upload["lc_original_params"]
        original_params = upload["original_params"]
    compressed = [e for e in entries if e["method"] not in ("dense", "dense-fp16")]
    sq_err = sum((e["rel_error"] * e["norm"]) ** 2 for e in compressed if e["norm"] > 0)
    sq_norm = sum(e["norm"] ** 2 for e in compressed)
    totals: dict[str, Any] = {
        "tensors": len(entries),
        "compressed_tensors": len(compressed),
        "params": sum(e["params"] for e in entries),
        "kept": sum(e["kept"] for e in entries),
        "nonzeros": sum(e["nonzeros"] for e in entries),
        "original_params": original_params,
        "original_bits": original_bits,
        "dense_fp32_bits": sum(e["bits"]["dense_fp32"] for e in entries),
        "lc_params": sum(c["params"] for c in counted),
        "lc_original_params": lc_original,
        "lc_bits": lc_bits,
        "lc_ratio": 32 * lc_original / lc_bits if lc_bits else None,
        "rel_error_compressed": math.sqrt(sq_err / sq_norm) if sq_norm else 0.0,
    }
    if all("coded" in e["bits"] for e in entries):
        coded = sum(e["bits"]["coded"] for e in entries)
        totals["coded_bits"] = coded
        totals["entropy_bits"] = sum(
            s["entropy_bits"] for e in entries for s in e.get("streams", []) if s["entropy_bits"] is not None
        )
        totals["huffman_bits_of_entropy_coded_streams"] = sum(
            s["bits"] for e in entries for s in e.get("streams", []) if s["entropy_bits"] is not None
        )
    if bin_bytes is not None:
        totals["bin_bits"] = 8 * bin_bytes
        totals["ratio"] = original_bits / (8 * bin_bytes) if bin_bytes else None
        totals["bits_per_weight"] = 8 * bin_bytes / totals["params"] if totals["params"] else None
    return totals


def _jsonable(stats: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in stats.items():
        if isinstance(value, torch.Tensor):
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


TABLE_COLUMNS = ("name", "shape", "method", "k", "rank", "kept", "params", "bits", "bits/weight", "rel.err")


def table_rows(entries: Sequence[Mapping[str, Any]]) -> list[tuple[str, ...]]:
    """A readable per-layer table (strings), for the CLI and `mcs inspect`."""
    rows: list[tuple[str, ...]] = []
    for e in entries:
        bits = e["bits"].get("coded")
        rows.append(
            (
                e["name"],
                "x".join(map(str, e["shape"])) or "scalar",
                e["method"],
                "" if e.get("codebook_size") is None else str(e["codebook_size"]),
                "" if e.get("rank") is None else str(e["rank"]),
                f"{e['kept']:,}",
                f"{e['params']:,}",
                "" if bits is None else f"{bits:,}",
                "" if bits is None or not e["params"] else f"{bits / e['params']:.3f}",
                "" if e.get("rel_error") is None else f"{e['rel_error']:.4f}",
            )
        )
    return rows


def text_table(entries: Sequence[Mapping[str, Any]]) -> str:
    """The per-layer table as aligned plain text (for logs and tests)."""
    rows = [TABLE_COLUMNS, *table_rows(entries)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_COLUMNS))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)


def json_finite(value: Any) -> Any:
    """JSON has no NaN or infinity: they are written as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_finite(item) for item in value]
    return value


def write_metrics(path: Path, metrics: Mapping[str, Any]) -> None:
    """`metrics.json`, atomically (a reader sees the old file or the whole new one)."""
    from compression_core.io import atomic_write_bytes

    atomic_write_bytes(Path(path), json.dumps(json_finite(dict(metrics)), indent=1).encode())
