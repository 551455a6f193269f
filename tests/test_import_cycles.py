"""No import circles inside a package: modules form a hierarchy (model < checkpoint < train), lazy imports included.

A circle that only works because one side imports inside a function breaks as soon as someone moves that import
to the top, and it hides which module owns what; graphgen and crysgen had checkpoint <-> train circles.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("graphgen", "molgen", "crysgen", "shared")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(package: str) -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((ROOT / package).rglob("*.py"))}


def import_graph(package: str) -> dict[str, set[str]]:
    """``module -> modules of the same package it imports`` (anywhere in the file, functions included).

    ``from pkg import sub`` counts as importing ``pkg.sub`` when that is a module; a package's own
    ``__init__`` is left out as a target (every submodule runs it anyway).
    """
    modules = _modules(package)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                subs = [f"{source}.{alias.name}" for alias in node.names if f"{source}.{alias.name}" in modules]
                targets = subs if len(subs) == len(node.names) else [source, *subs]
            else:
                continue
            for target in targets:
                # "import a.b.c" also runs a and a.b; only the module named is the dependency
                if target in modules and target != name and modules[target].name != "__init__.py":
                    deps.add(target)
        graph[name] = deps
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_circles(package):
    graph = import_graph(package)
    cycles = find_cycles(graph)
    detail = {m: sorted(graph[m] & set(c)) for c in cycles for m in c}
    assert not cycles, f"{package} has import circles: {detail}"


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for dep in graph.get(todo.pop(), ()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


@pytest.mark.parametrize("package", ["graphgen", "crysgen"])
def test_checkpoint_needs_no_training_code(package):
    """Loading a model builds it from code next to the model; train may use checkpoint (it writes model files)."""
    graph = import_graph(package)
    assert f"{package}.train" not in _reachable(graph, f"{package}.checkpoint")
    assert f"{package}.train" not in _reachable(graph, f"{package}.sample")


def test_the_cycle_finder_sees_a_lazy_circle(tmp_path):
    assert find_cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_every_module_imports_on_its_own():
    """Each graphgen and crysgen module imports in an interpreter where no module of the package is loaded yet.

    One subprocess: heavy third-party libraries stay loaded, the package's modules are dropped before each import.
    """
    names = [m for p in ("graphgen", "crysgen") for m in _modules(p)]
    code = (
        "import importlib, sys, traceback\n"
        "import torch, numpy\n"
        f"names = {names!r}\n"
        "failed = {}\n"
        "for name in names:\n"
        "    for loaded in [m for m in sys.modules if m.split('.')[0] in ('graphgen', 'crysgen')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        failed[name] = traceback.format_exc(limit=-3)\n"
        "print(repr(failed))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    failed = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    assert not failed, "\n".join(f"{k}:\n{v}" for k, v in failed.items())
