"""The import rules of the code base, checked on the source (no module is imported).

* ``ihgamp_core`` never imports ``gateway`` (the engine runs without the gateway);
* no import circles between modules (module-level imports; imports inside functions and
  under ``TYPE_CHECKING`` are how a module defers a heavy or optional dependency);
* the shared kit (``report``, ``slide``, ``embed``, ``tiling``, ``tissue``, ``uids``,
  ``codestream``) imports no analysis package (``hrd``, ``her2``): what a new analysis
  builds on stays free of the others; and one analysis never imports another.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if package else parts)] = (path, package)
    return out


def _top_level(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported (not under TYPE_CHECKING)."""
    out: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            out.append(node)
        elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
            out += _top_level(node.body) + _top_level(node.orelse)
        elif isinstance(node, ast.Try):
            out += _top_level(node.body) + _top_level(node.orelse)
            for handler in node.handlers:
                out += _top_level(handler.body)
    return out


def _target(name: str, package: bool, node: ast.ImportFrom) -> str:
    """The module a ``from ... import`` names, relative levels resolved."""
    if not node.level:
        return node.module or ""
    base = name.split(".") if package else name.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, (path, package) in modules.items():
        deps: set[str] = set()
        for node in _top_level(ast.parse(path.read_text()).body):
            if isinstance(node, ast.Import):
                deps |= {alias.name for alias in node.names}
                continue
            target = _target(name, package, node)
            for alias in node.names:
                full = f"{target}.{alias.name}"
                deps.add(full if full in modules else target)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_engine_never_imports_the_gateway() -> None:
    graph = _graph()
    wrong = [(m, d) for m, deps in graph.items() if m.startswith("ihgamp_core") for d in deps]
    assert not [(m, d) for m, d in wrong if d.split(".")[0] == "gateway"]
    assert len(graph) > 150  # the scan saw the whole tree


def test_there_are_no_import_circles() -> None:
    assert _cycles(_graph()) == []


KIT = ("report", "slide", "embed", "tiling", "tissue", "uids", "codestream")
ANALYSES = ("hrd", "her2")


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if parts[0] == "ihgamp_core" and len(parts) > 1 else ""


def _all_imports() -> dict[str, set[str]]:
    """Every import of every module, deferred ones included (inside functions too)."""
    modules = _modules()
    out: dict[str, set[str]] = {}
    for name, (path, package) in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                target = _target(name, package, node)
                deps |= {target, *(f"{target}.{a.name}" for a in node.names)}
        out[name] = {d for d in deps if d in modules}
    return out


def test_the_shared_kit_imports_no_analysis_and_analyses_not_each_other() -> None:
    graph = _all_imports()
    kit = [m for m in graph if _package(m) in KIT]
    assert {_package(m) for m in kit} == set(KIT)
    wrong = [(m, d) for m in kit for d in graph[m] if _package(d) in ANALYSES]
    assert wrong == []
    crossed = [
        (m, d)
        for m in graph
        if _package(m) in ANALYSES
        for d in graph[m]
        if _package(d) in ANALYSES and _package(d) != _package(m)
    ]
    assert crossed == []


def test_the_scan_finds_a_circle_when_there_is_one() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
