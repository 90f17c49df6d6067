"""pyproject.toml declares what the code and the suite import, and bounds what they reach into.

A library whose internals we import (kombu's filesystem channel, schemathesis' check functions,
Torch-Pruning's graph, onnxruntime's quantization) gets an upper bound, so a new release cannot break the
suite on a fresh machine before anyone has run it; every third-party module a test or the product imports
is declared (scipy came only through scikit-learn); PEP 639's `license = "..."` needs setuptools >= 77."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions, version
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PRODUCT = ("compression_core", "service", "worker", "mcs", "mcs_common", "client")
INTERNALS = ("kombu", "schemathesis", "torch-pruning", "onnxruntime", "onnx2torch")
# imported, but guaranteed by the declared package that is built on them
PROVIDED_BY = {"starlette": "fastapi", "billiard": "celery", "botocore": "boto3"}


def _name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def _declared() -> dict[str, Requirement]:
    project = PYPROJECT["project"]
    lines = project["dependencies"] + [
        r for extra in project["optional-dependencies"].values() for r in extra
    ]
    return {_name(r.name): r for r in map(Requirement, lines)}


def _imports(folders: list[Path]) -> dict[str, str]:
    """Top-level third-party modules imported anywhere under `folders` -> one file that imports it."""
    benchmarks = ROOT / "benchmarks"  # tests import the benchmarks' own modules (e.g. `helpers`)
    local = set(PRODUCT) | {"tests"} | {p.stem for f in folders for p in f.rglob("*.py")}
    local |= {p.stem for p in benchmarks.glob("*.py")} | {p.name for p in benchmarks.iterdir() if p.is_dir()}
    found: dict[str, str] = {}
    for folder in folders:
        for path in folder.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in (n.split(".")[0] for n in names):
                    if name not in sys.stdlib_module_names and name not in local:
                        found.setdefault(name, str(path.relative_to(ROOT)))
    return found


def test_every_imported_library_is_declared() -> None:
    declared, distributions = _declared(), packages_distributions()
    folders = [ROOT / "tests", *(ROOT / p for p in PRODUCT)]
    missing = []
    for module, where in sorted(_imports(folders).items()):
        names = {_name(d) for d in distributions.get(module, [module])}
        if not names & declared.keys() and not {_name(PROVIDED_BY.get(module, ""))} & declared.keys():
            missing.append(f"{module} ({where})")
    assert missing == []


def test_libraries_whose_internals_we_import_are_bounded_and_installed_within() -> None:
    declared = _declared()
    for name in INTERNALS:
        requirement = declared[name]
        assert any(spec.operator in ("<", "<=", "==", "~=") for spec in requirement.specifier), name
        assert requirement.specifier.contains(version(name), prereleases=True), (name, version(name))


def test_the_build_backend_understands_the_license_field() -> None:
    assert isinstance(PYPROJECT["project"]["license"], str)  # PEP 639 form
    (setuptools,) = [
        Requirement(r) for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools")
    ]
    assert setuptools.specifier.contains("77.0.0") and not setuptools.specifier.contains("76.9")
