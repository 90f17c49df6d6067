"""The client package imports only the standard library, httpx, typer and rich (what `mcs-client`
declares), so a CI step that only submits installs neither torch nor the service."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from tests.import_graph import ROOT, imports_of

DECLARED = {"httpx", "typer", "rich"}


def test_client_imports_only_the_standard_library_and_its_declared_dependencies() -> None:
    allowed = set(sys.stdlib_module_names) | DECLARED | {"client", "__future__"}
    outside = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path, line, name in imports_of("client")
        if name.split(".")[0] not in allowed
    ]
    assert outside == []


def test_the_distribution_declares_exactly_those_dependencies() -> None:
    project = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())["project"]
    names = {dep.split(">")[0].split("=")[0].split("[")[0].strip() for dep in project["dependencies"]}
    assert names == DECLARED
    assert project["scripts"]["mcs"] == "client.app:app"
    assert Path(ROOT / "client" / "app.py").is_file()
