"""Which modules a package's source imports, read from the AST (every import statement, including those
inside functions and under `if TYPE_CHECKING:`), so layering rules can be checked without importing."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _module_of(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(package: str, root: Path = ROOT) -> Iterator[tuple[Path, int, str]]:
    """(file, line, imported module) for every import in every .py file under `package/`; relative
    imports are resolved against the importing module."""
    for path in sorted((root / package).rglob("*.py")):
        module = _module_of(path, root)
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield path, node.lineno, alias.name
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = module.split(".")
                    base = base[: len(base) - node.level + (1 if is_package else 0)]
                    target = ".".join([*base, node.module] if node.module else base)
                else:
                    target = node.module or ""
                yield path, node.lineno, target
                # the names themselves may be submodules (`from . import x`): record them too
                for alias in node.names:
                    yield path, node.lineno, f"{target}.{alias.name}"


def violations(package: str, forbidden: set[str], root: Path = ROOT) -> list[str]:
    """`file:line imports module` for every import of a top-level package in `forbidden`."""
    return [
        f"{path.relative_to(root)}:{line} imports {name}"
        for path, line, name in imports_of(package, root)
        if name.split(".")[0] in forbidden
    ]


def module_graph(packages: list[str], root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the modules of `packages` it imports (a name imported from a package counts as its
    submodule when there is one; a package's own `__init__` is not an edge from inside it)."""
    modules = {
        _module_of(path, root): path
        for package in packages
        for path in sorted((root / package).rglob("*.py"))
    }
    graph: dict[str, set[str]] = {module: set() for module in modules}
    for package in packages:
        for path, _, name in imports_of(package, root):
            module = _module_of(path, root)
            target = (
                name
                if name in modules
                else name.rpartition(".")[0]
                if name.rpartition(".")[0] in modules
                else None
            )
            if target is not None and target != module and not module.startswith(target + "."):
                graph[module].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` (as a path that ends where it starts), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            found = visit(module)
            if found:
                return found
    return None
