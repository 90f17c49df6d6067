"""The numbers `mcs submit` and `mcs status` print and gate on, read from a job's metrics document.

The client reads the JSON the service returns, tolerantly: a key missing in an older or partial layout
gives None. It imports only the standard library, so the client distribution (`mcs-client`) needs no
torch and no `compression_core`; tests/client/test_headline.py checks it reads what the library writes.
Layout (compression_core.metrics): `totals.{ratio, original_bits, original_params, bin_bits, params,
nonzeros}` (original_*: the uploaded model), `files.{input_bytes, model_bin_bytes}`, and
`evaluation.{before, after}.{error, accuracy}` with `evaluation.samples` when the job had data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


def lookup(doc: Mapping[str, Any] | None, *paths: tuple[str, ...]) -> Any:
    """The first value found along any of the key paths (None if none is present)."""
    for path in paths:
        node: Any = doc
        for key in path:
            node = node.get(key) if isinstance(node, Mapping) else None
        if node is not None:
            return node
    return None


def number(value: Any) -> float | None:
    """A float, or None for a missing, boolean or non-numeric value."""
    if value is None or isinstance(value, bool):
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
    error_before: float | None  # a fraction in [0, 1]
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


def _error(m: Mapping[str, Any], when: str) -> float | None:
    error = number(
        lookup(m, ("evaluation", when, "error"), ("eval", when, "error"), (f"error_{when}",), ("error", when))
    )
    if error is None:
        accuracy = number(
            lookup(m, ("evaluation", when, "accuracy"), ("eval", when, "accuracy"), (f"accuracy_{when}",))
        )
        error = None if accuracy is None else 1.0 - accuracy
    return error


def _bytes_from_bits(value: Any) -> float | None:
    bits = number(value)
    return None if bits is None else bits / 8


def _split_of(m: Mapping[str, Any]) -> str | None:
    if lookup(m, ("evaluation", "after", "fidelity")) is None:
        return None
    split = lookup(m, ("evaluation", "after", "split"))
    return split if isinstance(split, str) else None


def headline(metrics: Mapping[str, Any] | None) -> Headline:
    """The headline numbers of a metrics document; any of them is None when the job did not report it."""
    m: Mapping[str, Any] = metrics or {}
    before = _bytes_from_bits(lookup(m, ("totals", "original_bits"))) or number(
        lookup(m, ("size_before_bytes",), ("files", "input_bytes"))
    )
    after = number(lookup(m, ("files", "model_bin_bytes"), ("size_after_bytes",))) or _bytes_from_bits(
        lookup(m, ("totals", "bin_bits"))
    )
    ratio = number(lookup(m, ("totals", "ratio"), ("ratio",), ("compression_ratio",)))
    if ratio is None and before and after:
        ratio = before / after
    samples = number(
        lookup(
            m,
            ("evaluation", "samples"),
            ("evaluation", "after", "samples"),
            ("evaluation", "before", "samples"),
        )
    )
    return Headline(
        ratio=ratio,
        size_before_bytes=before,
        size_after_bytes=after,
        params_total=number(
            lookup(m, ("totals", "original_params"), ("totals", "params"), ("params_total",))
        ),
        params_nonzero=number(lookup(m, ("totals", "nonzeros"), ("params_nonzero",))),
        error_before=_error(m, "before"),
        error_after=_error(m, "after"),
        eval_samples=None if samples is None else int(samples),
        agreement_after=number(lookup(m, ("evaluation", "after", "fidelity", "top1_agreement"))),
        output_error_after=number(lookup(m, ("evaluation", "after", "fidelity", "relative_output_error"))),
        fidelity_split=_split_of(m),
    )


def job_warnings(metrics: Mapping[str, Any] | None) -> list[str]:
    """What the job says to mistrust in its own numbers (`evaluation.data.warnings`), e.g. a validation
    split carved from the uploaded training data, and ONNX tensors whose names map to no parameter
    (`source.unmapped_names`): a CI user only sees what `mcs submit` prints."""
    warnings = lookup(metrics, ("evaluation", "data", "warnings"))
    found = [w for w in warnings if isinstance(w, str)] if isinstance(warnings, list) else []
    unmapped = lookup(metrics, ("source", "unmapped_names"))
    if isinstance(unmapped, list) and unmapped:
        shown = ", ".join(str(n) for n in unmapped[:3]) + (", ..." if len(unmapped) > 3 else "")
        found.append(
            f"{len(unmapped)} tensors of the uploaded graph have no parameter name of your model ({shown}), "
            "so model.pth will not load strictly into your class (usually the exporter folded BatchNorms "
            "into the convolutions: export with optimize=False (dynamo) or do_constant_folding=False "
            "(TorchScript) to keep them; docs/bring-your-own-model.md)"
        )
    return found


def human_bytes(n: float | None) -> str:
    """1536 -> '1.50 KiB'; None -> '-'."""
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB"):
        if abs(n) < 1024:
            return f"{n:.0f} B" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"
