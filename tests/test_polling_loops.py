"""Every loop in the tests that waits (sleeps between polls) has a deadline, so a job that ends early or
never starts fails the test with its state instead of hanging CI; pytest-timeout is the last resort."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOUNDS = ("deadline", "timeout", "monotonic", "perf_counter")


def _sleeps(node: ast.AST) -> bool:
    return any(
        isinstance(n, ast.Call)
        and (
            (isinstance(n.func, ast.Attribute) and n.func.attr == "sleep")
            or (isinstance(n.func, ast.Name) and n.func.id == "sleep")
        )
        for n in ast.walk(node)
    )


def test_every_polling_loop_in_the_tests_has_a_deadline() -> None:
    unbounded = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.While) and _sleeps(node):
                text = ast.get_source_segment(source, node) or ""
                if not any(bound in text for bound in BOUNDS):
                    unbounded.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert unbounded == []


def test_the_suite_has_a_default_timeout() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    options = config["tool"]["pytest"]["ini_options"]
    assert 0 < int(options["timeout"]) <= 1800
    assert any(r.startswith("pytest-timeout") for r in config["project"]["optional-dependencies"]["dev"])
