"""Reading a spec: JSON text or a file in, a validated `Spec` out (SpecError naming the fields otherwise).

A spec is an ordered list of rules; the first rule whose selector matches a tensor owns it. Each rule runs
one of the allowed step combinations on the tensors it selects. Checks that only need the spec happen here
(pydantic `ValidationError`, naming the field); checks that need the model (keep larger than a tensor, a
rule that selects nothing) happen in the pipeline as `SpecError`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from compression_core.errors import SpecError
from compression_core.spec.assemble import spec_model
from compression_core.spec.model import SpecBase

__all__ = [
    "example_names",
    "example_spec",
    "format_validation_error",
    "load_spec",
    "parse_spec",
    "spec_json_schema",
]


def spec_json_schema() -> dict[str, Any]:
    """The JSON Schema of `Spec` (the registered methods included), as the service publishes it."""
    return spec_model().model_json_schema()


def format_validation_error(error: ValidationError) -> str:
    """One line per problem, each naming the field path (e.g. `rules.0.steps.0.quantize.k`)."""
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "spec"
        lines.append(f"{where}: {item['msg']}")
    return "; ".join(lines)


def _check_nesting(text: str | bytes, what: str) -> None:
    """SpecError for JSON nested deeper than a spec can be (RecursionError in `json`, else later)."""
    from compression_core.jsonbound import MAX_SPEC_DEPTH, JSONDepthError, loads_bounded

    try:
        loads_bounded(text, MAX_SPEC_DEPTH, what)
    except JSONDepthError as error:
        raise SpecError(str(error)) from None
    except ValueError:
        return  # not JSON: the caller names that


def parse_spec(text: str | bytes) -> SpecBase:
    """Validate JSON text into a `Spec`, raising `SpecError` with the field names on failure."""
    _check_nesting(text, "the spec")
    try:
        return spec_model().model_validate_json(text)
    except ValidationError as error:
        raise SpecError(f"invalid spec: {format_validation_error(error)}") from None


def load_spec(path: str | Path) -> SpecBase:
    """Read and validate a spec file (`SpecError` when unreadable or invalid)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError(f"cannot read spec {path}: {error}") from None
    _check_nesting(text, f"spec {path}")
    try:
        json.loads(text)
    except json.JSONDecodeError as error:
        raise SpecError(f"spec {path} is not valid JSON: {error}") from None
    return parse_spec(text)


def example_names() -> list[str]:
    """Names of the example specs shipped in `compression_core/examples` (without `.json`)."""
    from importlib.resources import files

    return sorted(
        p.name.removesuffix(".json")
        for p in files("compression_core.examples").iterdir()
        if p.name.endswith(".json")
    )


def example_spec(name: str) -> SpecBase:
    """A shipped example spec by name (`SpecError` listing the names when unknown)."""
    from importlib.resources import files

    if name not in example_names():
        raise SpecError(f"no example spec {name!r}; examples: {', '.join(example_names())}")
    return parse_spec(files("compression_core.examples").joinpath(f"{name}.json").read_text(encoding="utf-8"))
