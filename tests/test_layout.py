"""The layout the design promises, pinned: the top-level folders, no import cycles
between modules, and a client side (`ipc`) that never imports the daemon at load time."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("daemon", "ipc")


def _module_imports(path: Path) -> set[str]:
    """Modules of this project imported when `path` is loaded: top-level statements
    only (imports inside functions are lazy by design; TYPE_CHECKING blocks never run)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m.split(".")[0] in PACKAGES}


def _graph() -> dict[str, set[str]]:
    modules = {
        ".".join(p.relative_to(REPO).with_suffix("").parts): p
        for pkg in PACKAGES
        for p in (REPO / pkg).glob("*.py")
    }
    modules = {m.removesuffix(".__init__"): p for m, p in modules.items()}
    return {
        m: {i for i in _module_imports(p) if i in modules and i != m} for m, p in modules.items()
    }


def test_top_level_layout() -> None:
    for name in ("daemon", "ipc", "tests", "bench", "packaging", "systemd", "pyproject.toml"):
        assert (REPO / name).exists(), name


def test_no_import_cycles() -> None:
    graph = _graph()
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            cycle = [*path[path.index(node) :], node]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if node in done:
            return
        for dep in sorted(graph[node]):
            visit(dep, [*path, node])
        done.add(node)

    for module in sorted(graph):
        visit(module, [])


def test_client_side_never_imports_the_daemon_at_load() -> None:
    graph = _graph()
    leaks = {
        m: sorted(d for d in deps if d.startswith("daemon"))
        for m, deps in graph.items()
        if m.startswith("ipc")
    }
    assert not {m: d for m, d in leaks.items() if d}
