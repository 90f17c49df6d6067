"""The JSON compression spec: which tensors get which steps, and which whole-model methods run.

`Spec` and `Rule` are assembled from the method registry (`assemble.py`) on first use, so they include the
methods installed through the `mcs.methods` entry-point group. The shared parts live in `base.py` (strict
base, selector, default policy) and `fields.py` (`model`, `data`, the training recipe); each method's own
fields live in its folder under `compression_core/methods/`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from compression_core.spec.base import MAX_KEEP, DefaultDtype, DefaultPolicy, Encoding, Kind, Selector, Strict
from compression_core.spec.fields import DataSpec, ModelSpec, OptimizerName, RetrainConfig
from compression_core.spec.model import CHECKED_CONTEXT
from compression_core.spec.parse import (
    example_names,
    example_spec,
    format_validation_error,
    load_spec,
    parse_spec,
    spec_json_schema,
)

if TYPE_CHECKING:
    from compression_core.spec.model import RuleBase as Rule
    from compression_core.spec.model import SpecBase as Spec

__all__ = [
    "CHECKED_CONTEXT",
    "MAX_KEEP",
    "DataSpec",
    "DefaultDtype",
    "DefaultPolicy",
    "Encoding",
    "Kind",
    "ModelSpec",
    "OptimizerName",
    "RetrainConfig",
    "Rule",
    "Selector",
    "Spec",
    "Strict",
    "example_names",
    "example_spec",
    "format_validation_error",
    "load_spec",
    "parse_spec",
    "spec_json_schema",
]


def __getattr__(name: str) -> Any:
    """`Spec`, `Rule` and `Step` as the registry makes them now (rebuilt when the set of methods changes).
    A method's own spec classes live in its folder (`compression_core.methods.<name>.spec`)."""
    from compression_core.spec import assemble

    if name in ("Spec", "Rule"):
        rule, spec = assemble.current()
        return spec if name == "Spec" else rule
    if name == "Step":
        return assemble.step_union()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
