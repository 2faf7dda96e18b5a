"""The packages' imports: no module imports one that imports it back (at any depth, counting
imports inside functions), and importing the tasks changes nothing in Luigi."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "trainer", "hierarchy")


def module_imports() -> dict[str, set[str]]:
    """``{module: the package modules it imports}`` for every module of :data:`PACKAGES`."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            modules[name] = path
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                          for alias in node.names}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other, directly or through others (Tarjan)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for child in sorted(graph[node]):
            if child not in index:
                visit(child)
                low[node] = min(low[node], low[child])
            elif child in on_stack:
                low[node] = min(low[node], index[child])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def test_no_import_circle_in_any_package():
    graph = {m: {d for d in deps if d not in PACKAGES} for m, deps in module_imports().items()}  # a package's
    found = circles(graph)  # __init__ is imported with every submodule: only submodule edges can close a circle
    assert not found, "modules importing each other: " + "; ".join(", ".join(c) for c in found)


def test_importing_the_tasks_changes_nothing_in_luigi():
    # (importing the package under Luigi is the entrance that does: see test_luigi_config)
    code = ("import pipeline.tasks; from pipeline import luigi_private as lp; "
            "from pipeline.luigi_config import DEFAULTS_FILE; "
            "print(hasattr(lp.command_run(), '_imagenet21kp_wrapped'), str(DEFAULTS_FILE) in lp.config_paths())")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "False"], out.stderr
