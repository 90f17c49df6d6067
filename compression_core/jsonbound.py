"""JSON from an upload with its nesting bounded: a few kilobytes of `[[[[...` must not become a 500.

Python's `json` raises `RecursionError` (not `ValueError`) past about a thousand levels, and a document
that parses may still break whatever walks it recursively later (`json.dumps`, pydantic, a database
driver). `loads_bounded` turns both into a `JSONDepthError` (a `ValueError`) naming the limit: the parse is
guarded, and the parsed value's depth is checked with an explicit stack before anyone else walks it.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["JSONDepthError", "MAX_SPEC_DEPTH", "check_depth", "loads_bounded", "nesting_depth"]

MAX_SPEC_DEPTH = 32  # a spec is ~5 levels deep; constructor kwargs may nest a few more


class JSONDepthError(ValueError):
    """JSON nested deeper than its reader allows."""


def nesting_depth(value: Any, limit: int | None = None) -> int:
    """How deeply lists and objects nest in `value` (a scalar is 0, `[]` is 1); stops early past `limit`."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list | tuple):
            children = node
        else:
            continue
        deepest = max(deepest, depth)
        if limit is not None and deepest > limit:
            return deepest
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list | tuple))
    return deepest


def check_depth(value: Any, max_depth: int, what: str) -> None:
    if nesting_depth(value, max_depth) > max_depth:
        raise JSONDepthError(f"{what} nests lists and objects more than {max_depth} levels deep")


def loads_bounded(text: str | bytes, max_depth: int, what: str, **options: Any) -> Any:
    """`json.loads(text, **options)`, refusing nesting deeper than `max_depth` with a JSONDepthError
    (`json.JSONDecodeError` for text that is not JSON, as `json.loads` raises)."""
    try:
        value = json.loads(text, **options)
    except RecursionError:
        raise JSONDepthError(f"{what} nests lists and objects more than {max_depth} levels deep") from None
    check_depth(value, max_depth, what)
    return value
