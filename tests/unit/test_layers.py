"""The package's layers import downwards only: no import cycle between its modules.

Function-level imports count (they are dependencies all the same); imports under
``TYPE_CHECKING`` do not (they are for the type checker only)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "pytest_hypomnesis"

# Snapshot.now()/all() (model) call the probe chain, which builds Snapshots: the one
# cycle left, listed here so that no new one creeps in.
KNOWN_CYCLE_MEMBER = ("pytest_hypomnesis.model", "pytest_hypomnesis.probe.chain")


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only.update(id(sub) for sub in ast.walk(node))
    found: set[str] = set()

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.startswith("pytest_hypomnesis."):
                target = owner(name)
                if target is not None and target != "pytest_hypomnesis":
                    found.add(target)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_but_the_known_one() -> None:
    modules = _modules()
    graph = {m: _imports(p, modules) - {m} for m, p in modules.items()}
    cycles = _cycles(graph)
    unexpected = [c for c in cycles if not set(KNOWN_CYCLE_MEMBER) <= c]
    assert unexpected == [], unexpected
    assert len(cycles) <= 1
    # Cut the known edge: nothing else may close a loop through model.
    graph["pytest_hypomnesis.model"].discard("pytest_hypomnesis.probe.chain")
    assert _cycles(graph) == []


def test_reports_and_the_record_do_not_import_the_plugin_hooks() -> None:
    modules = _modules()
    for name, path in modules.items():
        if name.startswith(("pytest_hypomnesis.report", "pytest_hypomnesis.record")):
            assert "pytest_hypomnesis.plugin.hooks" not in _imports(path, modules), name
