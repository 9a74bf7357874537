"""Rules about the code's shape, checked from the source: short functions, no import cycles,
``probes`` independent of ``interp``, light package imports, documented packages.

These read the files with :mod:`ast` (nothing is imported) except the import-cost check, which
runs a fresh interpreter.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("interp", "probes")
MAX_FUNCTION_LINES = 80


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    """Module name -> file, for every module of ``interp`` and ``probes``."""
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


SOURCES = _sources()


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_time_imports(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported: module level, including ``if``/``try``
    blocks and class bodies, but not function bodies or ``if TYPE_CHECKING:`` blocks."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                found += _import_time_imports(node.body)
            found += _import_time_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                found += _import_time_imports(block)
            for handler in node.handlers:
                found += _import_time_imports(handler.body)
        elif isinstance(node, ast.With | ast.ClassDef):
            found += _import_time_imports(node.body)
    return found


def _run_time_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import that can run: at module level and inside functions (a function's import
    runs on its first call, and a circle through it still ties the two modules together),
    but not under ``if TYPE_CHECKING:``, which never runs."""
    found: list[ast.Import | ast.ImportFrom] = []
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for node in child.orelse:
                found += _run_time_imports(ast.Module(body=[node], type_ignores=[]))
            continue
        if isinstance(child, ast.Import | ast.ImportFrom):
            found.append(child)
        found += _run_time_imports(child)
    return found


def _imported_modules(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The modules an import statement names (absolute), whether ours or not."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        package = module if SOURCES[module].name == "__init__.py" else module.rpartition(".")[0]
        base_parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
        base = ".".join([*base_parts, *([node.module] if node.module else [])])
    else:
        base = node.module or ""
    # ``from a import b`` imports the module a.b when there is one, else the name b of a.
    return [
        f"{base}.{alias.name}" if f"{base}.{alias.name}" in SOURCES else base
        for alias in node.names
    ]


def _import_graph(in_functions: bool = False) -> dict[str, set[str]]:
    """Module -> modules of ``interp`` and ``probes`` that it imports when it is imported
    (with ``in_functions``, also those its functions import when called)."""
    graph: dict[str, set[str]] = {}
    for module, path in SOURCES.items():
        tree = _parse(path)
        nodes = _run_time_imports(tree) if in_functions else _import_time_imports(tree.body)
        targets = {target for node in nodes for target in _imported_modules(module, node)}
        graph[module] = {t for t in targets if t in SOURCES and t != module}
    return graph


def _layer(module: str) -> str:
    """The part of the code a module belongs to: ``interp.cache.writer`` -> ``interp.cache``,
    a top-level module (``interp.models``) is its own part, ``probes.*`` -> ``probes``."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "interp" else parts[0]


def _layer_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The import graph between parts (:func:`_layer`): an edge wherever a module of one
    imports a module of another."""
    layers: dict[str, set[str]] = {_layer(m): set() for m in graph}
    for module, targets in graph.items():
        layers[_layer(module)] |= {_layer(t) for t in targets} - {_layer(module)}
    return layers


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a chain ``a -> b -> ... -> a``) per strongly connected component."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                connect(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [_cycle_in(graph, set(component)) for component in components]


def _cycle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest path from the component's first module back to itself."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for succ in sorted(graph[node] & component):
                if succ == start:
                    return [*paths[node], start]
                if succ not in paths:
                    paths[succ] = [*paths[node], succ]
                    following.append(succ)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # unreachable for a component


def test_no_function_longer_than_80_lines() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} "
        f"({node.end_lineno - node.lineno + 1} lines)"
        for path in SOURCES.values()
        for node in ast.walk(_parse(path))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not offenders, (
        f"functions longer than {MAX_FUNCTION_LINES} lines (split them into named steps):\n"
        + "\n".join(offenders)
    )


def test_no_import_cycles() -> None:
    cycles = _cycles(_import_graph())
    assert not cycles, "import cycles (module-level imports):\n" + "\n".join(
        " -> ".join(cycle) for cycle in cycles
    )


def test_no_import_circles_counting_imports_inside_functions() -> None:
    """An import inside a function hides a circle from the import system, not from the
    design: the shared piece belongs in the lower module."""
    cycles = _cycles(_import_graph(in_functions=True))
    assert not cycles, (
        "import circles (counting imports inside functions); move the shared piece to the "
        "lower module:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)
    )


def test_no_import_circles_between_subpackages() -> None:
    """The subpackages of ``interp`` (and its top-level modules) form layers: ``data`` below
    ``cache`` below ``probe``, and so on, never both ways."""
    cycles = _cycles(_layer_graph(_import_graph(in_functions=True)))
    assert not cycles, "import circles between subpackages:\n" + "\n".join(
        " -> ".join(cycle) for cycle in cycles
    )


def test_import_graph_counts_imports_inside_functions() -> None:
    tree = ast.parse(
        "import a\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import hidden\nelse:\n    import shown\n"
        "def f():\n    import inner\n"
        "class C:\n    def g(self):\n        from deep import x\n"
    )
    names = [
        alias.name if isinstance(node, ast.Import) else node.module
        for node in _run_time_imports(tree)
        for alias in node.names
    ]
    assert sorted(names) == ["a", "deep", "inner", "shown", "typing"]
    graph = _import_graph(in_functions=True)
    assert "interp.text.judging.verdict" in graph["interp.text.judging.base"]
    assert _layer("interp.cache.writer") == "interp.cache"
    assert _layer("interp.models") == "interp.models"
    assert _layer("probes.base") == "probes"
    layers = _layer_graph(
        {"interp.a.x": {"interp.b.y"}, "interp.b.y": {"interp.a.z"}, "interp.a.z": set()}
    )
    assert _cycles(layers) == [["interp.a", "interp.b", "interp.a"]]


def test_cycle_finder_reports_a_chain() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_import_graph_sees_relative_and_package_imports() -> None:
    graph = _import_graph()
    assert "probes.base" in graph["probes"]
    assert "interp.lazy" in graph["interp"]
    # Imports under ``if TYPE_CHECKING:`` do not count.
    assert "interp.cache" not in graph["interp"]
    relative = ast.parse("from .base import Probe\nfrom . import split").body
    assert _imported_modules("probes.metrics", relative[0]) == ["probes.base"]
    assert _imported_modules("probes", relative[1]) == ["probes.split"]


def test_probes_never_imports_interp() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for module, path in SOURCES.items()
        if module.split(".")[0] == "probes"
        for node in ast.walk(_parse(path))
        if isinstance(node, ast.Import | ast.ImportFrom)
        and any(target.split(".")[0] == "interp" for target in _imported_modules(module, node))
    ]
    assert not offenders, "probes/ must stay independent of interp:\n" + "\n".join(offenders)


@pytest.mark.parametrize("package", ["interp", "interp.probe", "interp.data", "interp.text"])
def test_package_import_loads_no_torch(package: str) -> None:
    code = (
        f"import sys, {package}\n"
        "heavy = sorted(m for m in ('torch', 'transformer_lens', 'transformers') "
        "if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == "", f"import {package} loaded {result.stdout.strip()}"


def test_every_package_has_a_docstring() -> None:
    missing = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "interp").rglob("__init__.py"))
        if not ast.get_docstring(_parse(path))
    ]
    assert not missing, "packages without a docstring in __init__.py:\n" + "\n".join(missing)


def _rebinds_sys_modules(tree: ast.Module) -> bool:
    """Whether the module assigns to ``sys.modules[...]`` (to stand in for another module)."""
    return any(
        isinstance(target, ast.Subscript)
        and isinstance(target.value, ast.Attribute)
        and target.value.attr == "modules"
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        for target in node.targets
    )


def _only_imports(tree: ast.Module) -> bool:
    """Whether the module, apart from its docstring, does nothing but import."""
    body = [n for n in tree.body if not isinstance(n, ast.Expr | ast.Pass)]
    return bool(body) and all(isinstance(n, ast.Import | ast.ImportFrom) for n in body)


def _is_alias_module(path: Path, tree: ast.Module) -> bool:
    """A module that only stands in for another: it rebinds ``sys.modules``, or it is not a
    package's ``__init__`` (which may gather its own modules' names) and only imports."""
    return _rebinds_sys_modules(tree) or (path.name != "__init__.py" and _only_imports(tree))


def _getattr_shims(tree: ast.Module) -> list[int]:
    """Lines of module-level ``def __getattr__``: a name that resolves to something moved
    elsewhere (package exports go through :func:`interp.lazy.lazy_exports` instead)."""
    return [
        node.lineno
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name == "__getattr__"
    ]


def test_no_alias_modules() -> None:
    """No module exists only to re-export another under an old name (the four "for one
    release" aliases had no release behind them), and no ``__getattr__`` shim forwards a
    moved name."""
    aliases = [
        str(path.relative_to(ROOT))
        for path in SOURCES.values()
        if _is_alias_module(path, _parse(path))
    ]
    shims = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in SOURCES.values()
        for line in _getattr_shims(_parse(path))
    ]
    assert not aliases, "alias modules (import the real module instead):\n" + "\n".join(aliases)
    assert not shims, "module-level __getattr__ shims:\n" + "\n".join(shims)


def test_alias_finder_sees_the_old_shapes() -> None:
    moved = ast.parse(
        '"""Moved."""\nimport sys\nfrom a import b as _m\nsys.modules[__name__] = _m\n'
    )
    reexport = ast.parse('"""Moved."""\nfrom a.b import *  # noqa\n')
    real = ast.parse('"""Real."""\nimport re\nPATTERN = re.compile("x")\n')
    module = Path("interp/old.py")
    assert _is_alias_module(module, moved) and _is_alias_module(module, reexport)
    assert not _is_alias_module(module, real)
    assert not _is_alias_module(Path("interp/pkg/__init__.py"), reexport)
    shim = ast.parse("def __getattr__(name):\n    raise AttributeError(name)\n")
    assert _getattr_shims(shim) == [1]


@pytest.mark.parametrize(
    "old", ["interp.generate", "interp.judge", "interp.judging", "interp.scenarios"]
)
def test_removed_alias_paths_are_gone(old: str) -> None:
    assert old not in SOURCES and not (ROOT / old.replace(".", "/")).exists()
