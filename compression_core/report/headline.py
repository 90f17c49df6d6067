"""The few numbers a person (or a CI gate) looks at first, read tolerantly from a metrics dict.

The metrics layout is owned by `compression_core.metrics`; this module only reads it, accepts older or
partial layouts (missing keys give None) and never imports torch, so the HTTP client can use it too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Path_ = Sequence[str]


def lookup(doc: Mapping[str, Any] | None, *paths: Path_) -> Any:
    """The first value found along any of the key paths (None if none is present)."""
    for path in paths:
        node: Any = doc
        for key in path:
            if not isinstance(node, Mapping) or key not in node:
                node = None
                break
            node = node[key]
        if node is not None:
            return node
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Headline:
    ratio: float | None  # size before / size after
    size_before_bytes: float | None
    size_after_bytes: float | None
    params_total: float | None
    params_nonzero: float | None
    lc_ratio: float | None  # the LC toolkit's counting (weights only, 32-bit baseline)
    error_before: float | None  # fraction in [0, 1]
    error_after: float | None
    eval_samples: int | None
    # fidelity to the uploaded model (`evaluation.after.fidelity`): what a job without labels reports
    agreement_after: float | None = None  # top-1 agreement, a fraction in [0, 1]
    output_error_after: float | None = None  # relative output error ||f_c(X) - f_0(X)|| / ||f_0(X)||
    fidelity_split: str | None = None  # the split both were measured on

    @property
    def error_increase(self) -> float | None:
        """error_after - error_before as a fraction (None unless both are known)."""
        if self.error_before is None or self.error_after is None:
            return None
        return self.error_after - self.error_before


def _error(metrics: Mapping[str, Any], when: str) -> float | None:
    err = _number(
        lookup(
            metrics,
            ("evaluation", when, "error"),
            ("eval", when, "error"),
            (f"error_{when}",),
            ("error", when),
        )
    )
    if err is None:
        acc = _number(
            lookup(
                metrics, ("evaluation", when, "accuracy"), ("eval", when, "accuracy"), (f"accuracy_{when}",)
            )
        )
        err = None if acc is None else 1.0 - acc
    return err


def _bits_as_bytes(value: Any) -> float | None:
    bits = _number(value)
    return None if bits is None else bits / 8


def _split_of(m: Mapping[str, Any]) -> str | None:
    if lookup(m, ("evaluation", "after", "fidelity")) is None:
        return None
    split = lookup(m, ("evaluation", "after", "split"))
    return split if isinstance(split, str) else None


def headline(metrics: Mapping[str, Any] | None) -> Headline:
    """Headline numbers of a metrics dict; any of them may be None when the job did not report it.

    Layout (compression_core.metrics): `totals.{ratio, original_bits, original_params, bin_bits, params,
    nonzeros, lc_ratio}` (original_*: the uploaded model), `files.model_bin_bytes`; evaluation, when the
    job had data, under `evaluation.{before,after}.error`.
    """
    m: Mapping[str, Any] = metrics or {}
    before = _bits_as_bytes(lookup(m, ("totals", "original_bits"))) or _number(
        lookup(m, ("size_before_bytes",), ("files", "input_bytes"))
    )
    after = _number(lookup(m, ("files", "model_bin_bytes"), ("size_after_bytes",))) or _bits_as_bytes(
        lookup(m, ("totals", "bin_bits"))
    )
    ratio = _number(lookup(m, ("totals", "ratio"), ("ratio",), ("compression_ratio",)))
    if ratio is None and before and after:
        ratio = before / after
    samples = lookup(
        m, ("evaluation", "samples"), ("evaluation", "after", "samples"), ("evaluation", "before", "samples")
    )
    return Headline(
        ratio=ratio,
        size_before_bytes=before,
        size_after_bytes=after,
        params_total=_number(
            lookup(m, ("totals", "original_params"), ("totals", "params"), ("params_total",))
        ),
        params_nonzero=_number(lookup(m, ("totals", "nonzeros"), ("params_nonzero",))),
        lc_ratio=_number(lookup(m, ("totals", "lc_ratio"))),
        error_before=_error(m, "before"),
        error_after=_error(m, "after"),
        eval_samples=int(samples) if _number(samples) is not None else None,
        agreement_after=_number(lookup(m, ("evaluation", "after", "fidelity", "top1_agreement"))),
        output_error_after=_number(lookup(m, ("evaluation", "after", "fidelity", "relative_output_error"))),
        fidelity_split=_split_of(m),
    )


def human_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"  # pragma: no cover
