"""The shape of compression_core, the service and the worker, read from their source: no import cycles,
methods and model sources reached only through their registries (in the library, the service and the
worker), small files. Every import counts, at module level, inside functions and under TYPE_CHECKING."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import compression_core
from tests.import_graph import find_cycle, imports_of, module_graph

ROOT = Path(compression_core.__file__).parent
PACKAGE = "compression_core"
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join([PACKAGE, *parts])] = path
    return found


MODULES = _modules()


def _imports(module: str, path: Path) -> set[str]:
    """The compression_core modules `module` imports (a name imported from a package counts as its submodule
    when there is one)."""
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in MODULES else base)
    # importing a.b.c runs a/__init__ and a/b/__init__ first (unless the importer is inside them already)
    ancestors = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
    for target in list(targets):
        parts = target.split(".")
        targets.update(".".join(parts[:i]) for i in range(2, len(parts)))
    return {t for t in targets if t in MODULES and t != module and t not in ancestors}


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def _cycle() -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for module in sorted(GRAPH):
        if module not in state:
            found = visit(module)
            if found:
                return found
    return None


def test_the_import_graph_is_read_from_the_source():
    assert "compression_core.methods.registry" in GRAPH["compression_core.spec.assemble"]
    assert "compression_core.job.context" in GRAPH["compression_core.methods.lc.run"]
    # function-level imports count too
    assert "compression_core.evaluate" in GRAPH["compression_core.training.loop"]
    # and so do the packages an import initializes on the way
    assert "compression_core.spec" in GRAPH["compression_core.methods.prune.spec"]


def test_compression_core_has_no_import_cycle():
    cycle = _cycle()
    assert cycle is None, " -> ".join(cycle or [])


def _method_packages() -> set[str]:
    methods = ROOT / "methods"
    return {f"{PACKAGE}.methods.{p.name}" for p in methods.iterdir() if (p / "__init__.py").is_file()}


def test_only_the_methods_package_imports_a_particular_method():
    packages = _method_packages()
    assert f"{PACKAGE}.methods.lc" in packages and f"{PACKAGE}.methods.prune" in packages
    offenders = sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if not module.startswith(f"{PACKAGE}.methods")
        for target in targets
        if any(target == p or target.startswith(p + ".") for p in packages)
    )
    assert offenders == []


def test_no_source_file_is_over_600_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in MODULES.values()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


@pytest.mark.parametrize(
    "first", ["compression_core.methods.prune.spec", "compression_core.methods", "compression_core.spec"]
)
def test_the_spec_builds_in_a_fresh_interpreter_without_torch(first):
    """Whatever is imported first, the registry and the spec assemble (no import cycle at run time), and the
    service publishes the JSON Schema without importing torch."""
    code = (
        f"import sys, {first}\n"
        "from compression_core.spec import parse_spec, spec_json_schema\n"
        "assert 'lc' in spec_json_schema()['properties']\n"
        'parse_spec(\'{"rules": [{"steps": [{"type": "prune", "keep": 1}]}]}\')\n'
        "assert 'torch' not in sys.modules, 'the spec imported torch'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("package", ["service", "worker"])
def test_the_service_and_the_worker_import_no_particular_method(package):
    """They reach methods through the registry (`compression_core.methods`, its base and `outer`
    interfaces): a new method, outer ones included, needs no service or worker edit."""
    packages = _method_packages()
    offenders = sorted(
        f"{path.name}:{line} imports {name}"
        for path, line, name in imports_of(package)
        if any(name == p or name.startswith(p + ".") for p in packages)
    )
    assert offenders == []


def test_the_check_sees_a_worker_importing_a_method(tmp_path):
    (tmp_path / "worker").mkdir()
    (tmp_path / "worker" / "probe.py").write_text(
        "def f():\n    from compression_core.methods.search.trial import run_trial\n"
    )
    names = [name for _, _, name in imports_of("worker", tmp_path)]
    assert "compression_core.methods.search.trial" in names


@pytest.mark.parametrize("package", ["service", "worker"])
def test_the_service_and_the_worker_have_no_import_cycle(package):
    graph = module_graph([package])
    assert "worker.search" in module_graph(["worker"])["worker.runner"]  # the graph sees function imports
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def test_only_the_sources_package_imports_a_particular_source():
    """A new kind of input is one folder plus its registration: nothing else names it."""
    sources = {m for m in MODULES if m.startswith(f"{PACKAGE}.sources.") and m != f"{PACKAGE}.sources.base"}
    assert f"{PACKAGE}.sources.state_dict" in sources
    offenders = sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if not module.startswith(f"{PACKAGE}.sources")
        for target in targets
        if target in sources
    )
    assert offenders == []
