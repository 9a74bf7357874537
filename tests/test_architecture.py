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


def _import_graph() -> dict[str, set[str]]:
    """Module -> modules of ``interp`` and ``probes`` that it imports when it is imported."""
    graph: dict[str, set[str]] = {}
    for module, path in SOURCES.items():
        targets = {
            target
            for node in _import_time_imports(_parse(path).body)
            for target in _imported_modules(module, node)
        }
        graph[module] = {t for t in targets if t in SOURCES and t != module}
    return graph


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


#: Old import paths the README documented before the packages were reorganised, kept as
#: aliases for one release: each must be the very module of its new home (not a copy).
MOVED = {
    "interp.generate": "interp.text.generation",
    "interp.judging": "interp.text.judging",
    "interp.judging.rule": "interp.text.judging.rule",
    "interp.judging.llm": "interp.text.judging.llm",
    "interp.judging.human": "interp.text.judging.human",
    "interp.scenarios": "interp.data.scenarios",
    "interp.judge": "interp.text.judge",
}


@pytest.mark.parametrize(("old", "new"), sorted(MOVED.items()))
def test_old_import_paths_alias_their_new_modules(old: str, new: str) -> None:
    code = (
        "import importlib, sys\n"
        f"old = importlib.import_module({old!r})\n"
        f"assert old is importlib.import_module({new!r}), (old, sys.modules[{new!r}])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_old_probe_config_path_still_imports() -> None:
    from interp.config import ProbeConfig as old
    from interp.probe import ProbeConfig

    assert old is ProbeConfig


@pytest.mark.parametrize("module", ["interp.judge", "interp.scenarios"])
def test_old_commands_still_run(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout
