"""The package's layers import downwards only: no import cycle between its modules.

Function-level imports count (they are dependencies all the same); imports under
``TYPE_CHECKING`` do not (they are for the type checker only)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import TypeGuard

PACKAGE = Path(__file__).resolve().parents[2] / "pytest_hypomnesis"


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


def test_no_import_cycles() -> None:
    modules = _modules()
    graph = {m: _imports(p, modules) - {m} for m, p in modules.items()}
    assert _cycles(graph) == []


def test_the_records_the_probe_answers_in_sit_below_it() -> None:
    # model (Snapshot.now/all) calls the probe; the probe answers in gpumodel's records.
    modules = _modules()
    for name, path in modules.items():
        if name.startswith("pytest_hypomnesis.probe"):
            assert "pytest_hypomnesis.model" not in _imports(path, modules), name
    gpumodel = _imports(modules["pytest_hypomnesis.gpumodel"], modules)
    assert not any(m.startswith("pytest_hypomnesis.probe") for m in gpumodel), gpumodel


def test_reports_and_the_record_do_not_import_the_plugin_hooks() -> None:
    modules = _modules()
    for name, path in modules.items():
        if name.startswith(("pytest_hypomnesis.report", "pytest_hypomnesis.record")):
            assert "pytest_hypomnesis.plugin.hooks" not in _imports(path, modules), name


def _reads_sys_platform(node: ast.AST) -> TypeGuard[ast.Attribute]:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "platform"
        and isinstance(node.value, ast.Name)
        and node.value.id == "sys"
    )


# What may stand between ``sys.platform`` and the ``if`` it decides: the forms mypy's
# ``--platform`` runs evaluate (``==``/``!=``, ``.startswith``, ``not``, ``and``/``or``).
_GUARD_PARTS = (ast.Compare, ast.Call, ast.Attribute, ast.BoolOp, ast.UnaryOp)


def test_os_checks_go_through_platform_but_mypy_guards() -> None:
    """Which OS this is: ``_platform`` (``IS_*``, ``system()``). Elsewhere ``sys.platform``
    is only an ``if`` condition guarding a call that exists on one OS, the one form mypy's
    per-platform runs understand; never stored, returned or passed on."""
    stray = []
    for name, path in _modules().items():
        if name == "pytest_hypomnesis._platform":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        parents = {id(c): n for n in ast.walk(tree) for c in ast.iter_child_nodes(n)}
        for node in ast.walk(tree):
            if not _reads_sys_platform(node):
                continue
            child: ast.AST = node
            parent = parents.get(id(node))
            while isinstance(parent, _GUARD_PARTS):
                child, parent = parent, parents.get(id(parent))
            if not (isinstance(parent, ast.If) and parent.test is child):
                stray.append(f"{name}:{node.lineno}")
    assert stray == []
