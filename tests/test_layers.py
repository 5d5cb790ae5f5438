"""The layering of src/mergesmith: imports point down the data flow, and there is no cycle.

Every import counts, module-level or inside a function (parsed with `ast`, never run).
`from mergesmith.x import y` depends on `mergesmith.x` (a package's __init__ included) and, when
`y` is a module, on it too: the same rule as /work/shared/tools/import_cycles.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "mergesmith"

# Lowest first: a module may import its own layer and the layers below it, never above.
LAYERS: list[tuple[str, ...]] = [
    ("errors", "version", "lazy_torch", "threads", "progress"),
    ("arch",),
    ("io", "methods"),
    ("recipe",),
    ("tokenizer",),
    ("plan",),
    ("engine",),
    ("datamerge",),  # calibration statistics, computed by the api before a data-aware merge
    ("api", ""),  # "" is the package root, which re-exports the api
    ("evaluate",),
    ("search", "monster", "moe", "lora", "report", "demo"),
    ("cli", "__main__"),
]
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}
# Dynamic imports hide edges from this check; only the lazy torch proxy may import (torch) by name.
DYNAMIC_IMPORTS_ALLOWED = {"mergesmith.lazy_torch"}


def modules() -> dict[str, Path]:
    found = {}
    for path in (SRC / PACKAGE).rglob("*.py"):
        rel = path.relative_to(SRC).with_suffix("")
        found[".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)] = path
    return found


def _targets(module: str, is_package: bool, node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    assert isinstance(node, ast.ImportFrom)
    base = node.module or ""
    if node.level:
        parts = module.split(".")
        keep = len(parts) - node.level + (1 if is_package else 0)
        base = ".".join(parts[:keep] + ([base] if base else []))
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def _is_dynamic_import(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
    return name in ("__import__", "import_module")


def import_graph() -> tuple[dict[str, set[str]], list[str]]:
    """Each module's imports of other mergesmith modules, and every dynamic import found."""
    mods = modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    dynamic = []
    for module, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if _is_dynamic_import(node) and module not in DYNAMIC_IMPORTS_ALLOWED:
                dynamic.append(f"{module}:{node.lineno}")
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in _targets(module, path.name == "__init__.py", node):
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != module:
                    graph[module].add(target)
    return graph, dynamic


def layer_of(module: str) -> int:
    part = module.split(".")[1] if "." in module else ""
    assert part in RANK, f"{module}: not in any layer of tests/test_layers.py; add it to LAYERS"
    return RANK[part]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

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
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle() -> None:
    graph, _ = import_graph()
    assert cycles(graph) == []


def test_imports_point_down_the_layers() -> None:
    graph, _ = import_graph()
    upward = sorted(f"{m} -> {t}" for m, targets in graph.items() for t in targets if layer_of(t) > layer_of(m))
    assert upward == []


def test_no_dynamic_imports() -> None:
    assert import_graph()[1] == []


def test_the_checks_catch_a_cycle_and_an_upward_import() -> None:
    graph = {"mergesmith.plan.build": {"mergesmith.api"}, "mergesmith.api": {"mergesmith.plan.build"}}
    assert cycles(graph) == [["mergesmith.api", "mergesmith.plan.build"]]
    assert layer_of("mergesmith.api") > layer_of("mergesmith.plan.build")
    assert layer_of("mergesmith.methods.linear") < layer_of("mergesmith.recipe.load")
