"""The module layout: no import loops among the modules of a package (issue 14).

Read from the source (every ``import`` statement, deferred ones inside functions too), so a
loop hidden behind an import moved into a function still counts. ``collector/storage/`` is
left out: its own loop is being taken apart separately.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIPPED = "collector.storage"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(package: str) -> dict[str, Path]:
    found = {_module_name(p): p for p in (ROOT / package).rglob("*.py")}
    return {name: path for name, path in found.items()
            if name != SKIPPED and not name.startswith(SKIPPED + ".")}


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    # A package's own relative imports start at the package; a module's at its parent.
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules (of ``modules``) it imports, by name."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_package, node)
                # ``from . import views`` imports the submodule; ``from .x import y`` imports x
                # (and y, when y is a submodule of x).
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            for target in targets:
                # Importing a.b.c runs a, a.b and a.b.c; the importer's own packages are
                # already running when it runs, so they are no edge.
                parts = target.split(".")
                for i in range(1, len(parts) + 1):
                    prefix = ".".join(parts[:i])
                    if prefix in modules and not (name + ".").startswith(prefix + "."):
                        graph[name].add(prefix)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_planted_loop() -> None:
    """The check can fail: the old app <-> dashboard loop, written as it was, is found."""
    graph = {"collector.app": {"collector.dashboard"},
             "collector.dashboard": {"collector.dashboard.views", "collector.app"},
             "collector.dashboard.views": {"collector.app"},
             "collector.errors": set()}
    cycle = find_cycle(graph)
    assert cycle is not None
    assert cycle[0] == cycle[-1]
    assert set(cycle) <= {"collector.app", "collector.dashboard", "collector.dashboard.views"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_reads_relative_and_deferred_imports(tmp_path: Path) -> None:
    """A parent-relative import inside a function counts as an edge."""
    pkg = tmp_path / "collector"
    (pkg / "dashboard").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "app.py").write_text("def f():\n    from .dashboard import setup\n")
    (pkg / "dashboard" / "__init__.py").write_text("from . import views\n")
    (pkg / "dashboard" / "views.py").write_text("from ..app import STORE\n")
    modules = {"collector": pkg / "__init__.py", "collector.app": pkg / "app.py",
               "collector.dashboard": pkg / "dashboard" / "__init__.py",
               "collector.dashboard.views": pkg / "dashboard" / "views.py"}
    graph = import_graph(modules)
    assert graph["collector.app"] == {"collector.dashboard"}
    assert graph["collector.dashboard"] == {"collector.dashboard.views"}
    assert graph["collector.dashboard.views"] == {"collector.app"}
    assert find_cycle(graph) is not None


def test_no_import_loop_among_collector_modules() -> None:
    modules = _modules("collector")
    assert {"collector.app", "collector.dashboard", "collector.dashboard.views",
            "collector.appkeys", "collector.web"} <= set(modules)
    cycle = find_cycle(import_graph(modules))
    assert cycle is None, "import loop: " + " -> ".join(cycle or [])


@pytest.mark.parametrize(("package", "some"), [("protocol", "protocol.codec"),
                                               ("stb_widget", "stb_widget.ui.app"),
                                               ("simulators", "simulators.fleet")])
def test_no_import_loop_in_the_other_packages(package: str, some: str) -> None:
    modules = _modules(package)
    assert some in modules
    cycle = find_cycle(import_graph(modules))
    assert cycle is None, "import loop: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("first", ["collector.dashboard.views", "collector.dashboard",
                                   "collector.dashboard.metrics", "collector.app"])
def test_each_entry_point_imports_first_in_a_fresh_interpreter(first: str) -> None:
    """The orders that used to go through the loop: each module imported first, alone."""
    done = subprocess.run([sys.executable, "-c", f"import {first}; import collector.app"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
