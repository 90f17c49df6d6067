"""Numeric fields of a spec by path (`rules.0.steps.0.sparsity`), and the up-front check of every trial.

A path names a field of the spec as JSON (the dump with every default filled in), in the same dotted
form as the 422 errors. Before anything is queued every trial's spec is built and validated, so a path
that does not exist or a value the step refuses is a `SearchPathError` naming the path.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from compression_core.errors import SpecError

__all__ = ["SearchPathError", "get_value", "set_value", "trial_spec", "validate_trials", "without_search"]

Path = tuple[str | int, ...]


class SearchPathError(SpecError, ValueError):
    """A search parameter that cannot be applied; `loc` is where in the spec (for the 422's field name).

    A ValueError too, so pydantic reports it when raised inside the Spec's validator."""

    def __init__(self, path: str, message: str, loc: tuple[str, ...] | None = None) -> None:
        self.loc: tuple[str, ...] = loc or ("search", "parameters", path)
        super().__init__(f"{'.'.join(self.loc)}: {message}")
        self.path = path


def parse_path(path: str) -> Path:
    return tuple(int(part) if part.isdigit() else part for part in path.split("."))


def _walk(spec: Any, path: str) -> tuple[Any, str | int]:
    """The container holding the field at `path`, and the field's key in it."""
    parts = parse_path(path)
    node = spec
    for depth, part in enumerate(parts[:-1]):
        node = _child(node, part, path, parts[: depth + 1])
    last = parts[-1]
    _child(node, last, path, parts)  # the field itself must exist
    return node, last


def _child(node: Any, part: str | int, path: str, prefix: Path) -> Any:
    where = ".".join(str(p) for p in prefix)
    if isinstance(node, list):
        if not isinstance(part, int) or part >= len(node):
            raise SearchPathError(path, f"{where} does not exist (the list has {len(node)} entries)")
        return node[part]
    if isinstance(node, Mapping):
        if part not in node and str(part) not in node:
            raise SearchPathError(path, f"{where} is not a field of the spec")
        return node[part] if part in node else node[str(part)]
    if node is None:
        parent = ".".join(str(p) for p in prefix[:-1])
        raise SearchPathError(path, f"{parent} is not set in the spec (give it to search inside it)")
    raise SearchPathError(path, f"{where}: not a container")


def get_value(spec: Mapping[str, Any], path: str) -> Any:
    node, key = _walk(spec, path)
    return node[key]


def set_value(spec: dict[str, Any], path: str, value: int | float | str) -> None:
    """Set a numeric field (or, with a string, a string field) in place; SearchPathError when the path does
    not exist or holds something else."""
    node, key = _walk(spec, path)
    current = node[key]
    if isinstance(value, str):
        if not isinstance(current, str):
            raise SearchPathError(path, f"not a string field (it holds {type(current).__name__})")
    elif isinstance(current, bool) or not (current is None or isinstance(current, int | float)):
        raise SearchPathError(path, f"not a numeric field (it holds {type(current).__name__})")
    node[key] = value


def without_search(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec as a trial runs it: everything but the `search` field.

    Trials are measured for the search, not shipped: unless the spec asks for exports (or `int8`), a trial
    skips the ONNX export and latency measurements that naming a `model` otherwise switches on."""
    trial = {key: copy.deepcopy(value) for key, value in spec.items() if key != "search"}
    if trial.get("model") is not None and "export" not in trial and trial.get("int8") is None:
        trial["export"] = []
    return trial


def trial_spec(base: Mapping[str, Any], assignment: Mapping[str, int | float | str]) -> dict[str, Any]:
    spec = without_search(base)
    for path, value in assignment.items():
        set_value(spec, path, value)
    return spec


def validate_trials(base: Mapping[str, Any], assignments: Iterable[Mapping[str, int | float | str]]) -> None:
    """Build and validate each trial's spec; the first refusal is a SearchPathError naming its path."""
    from compression_core.spec import Spec, format_validation_error

    seen: set[tuple[tuple[str, int | float | str], ...]] = set()
    for assignment in assignments:
        key = tuple(sorted(assignment.items()))
        if key in seen:  # the same trial spec: validated once
            continue
        seen.add(key)
        spec = trial_spec(base, assignment)
        try:
            Spec.model_validate(spec)
        except ValidationError as error:
            path = _blamed(error, assignment)
            shown = ", ".join(f"{p}={v!r}" for p, v in assignment.items())
            raise SearchPathError(
                path, f"the trial {shown} is refused: {format_validation_error(error)}"
            ) from None


def _blamed(error: ValidationError, assignment: Mapping[str, Any]) -> str:
    """The parameter whose path is closest to where validation failed (the first one when unclear)."""
    paths = list(assignment)
    for item in error.errors():
        parts = [
            str(part) for i, part in enumerate(item["loc"]) if not (i >= 2 and item["loc"][i - 2] == "steps")
        ]
        loc = ".".join(parts)  # without the step's type tag (`steps.0.prune.sparsity`)
        for path in paths:
            if loc == path or path.startswith(loc + ".") or loc.startswith(path):
                return path
    return paths[0]
