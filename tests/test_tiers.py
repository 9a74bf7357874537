"""The fast tier (``pytest -m "not slow"``) stays honest: every test that ``tests/conftest.py``
names as slow exists (its function; a parameter id such as ``[gemma2]`` is not checked), and
every package of ``interp/`` (and ``probes/``) is still imported by tests that the fast tier
runs.

Read statically (``ast``), without importing the test modules: a test counts as fast unless its
module sets ``pytestmark`` to ``slow`` or ``real_model``, it is decorated so, or
``conftest.SLOW`` names it without a parameter id (an entry with an id, such as
``test_sae_trains[gemma2]``, leaves the test's other parametrizations fast). A package counts as
covered by a fast test when the test's module imports it at module level or the test imports it
in its own body.
"""

from __future__ import annotations

import ast
from pathlib import Path

import conftest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
SLOW_MARKS = {"slow", "real_model"}


def packages() -> list[str]:
    """``interp.<sub>`` for every subpackage of ``interp/``, and ``probes``."""
    subs = sorted(p.parent.name for p in (ROOT / "interp").glob("*/__init__.py"))
    return [f"interp.{name}" for name in subs] + ["probes"]


def _mark_names(node: ast.expr) -> set[str]:
    """``slow`` from ``pytest.mark.slow``, ``pytest.mark.slow(...)`` or a list of marks."""
    if isinstance(node, ast.List | ast.Tuple):
        return set().union(*(_mark_names(e) for e in node.elts)) if node.elts else set()
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute) and ast.unparse(node.value) == "pytest.mark":
        return {node.attr}
    return set()


def _imported(nodes: list[ast.stmt] | ast.AST) -> set[str]:
    """Dotted names imported by ``nodes`` (``from interp import sae`` gives ``interp`` and
    ``interp.sae``)."""
    walk = (
        (n for stmt in nodes for n in ast.walk(stmt))
        if isinstance(nodes, list)
        else ast.walk(nodes)
    )
    names: set[str] = set()
    for node in walk:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def fast_tests() -> dict[str, set[str]]:
    """``file::test`` of every fast test, with the dotted names it can use."""
    out: dict[str, set[str]] = {}
    for path in sorted(TESTS.glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        module_marks: set[str] = set()
        top = [s for s in tree.body if isinstance(s, ast.Import | ast.ImportFrom)]
        for stmt in tree.body:
            if isinstance(stmt, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "pytestmark" for t in stmt.targets
            ):
                module_marks |= _mark_names(stmt.value)
        if module_marks & SLOW_MARKS:
            continue
        module_imports = _imported(top)
        for node in tree.body:
            if not (isinstance(node, ast.FunctionDef) and node.name.startswith("test_")):
                continue
            marks = set().union(set(), *(_mark_names(d) for d in node.decorator_list))
            name = f"{path.name}::{node.name}"
            if marks & SLOW_MARKS or name in conftest._SLOW_IDS:
                continue
            out[name] = module_imports | _imported(node)
    return out


def test_every_slow_entry_names_a_test_that_exists():
    missing = []
    for entry in sorted(conftest._SLOW_IDS):
        file, _, name = entry.partition("::")
        path = TESTS / file
        bare = name.split("[", 1)[0]
        defined = (
            {
                n.name
                for n in ast.parse(path.read_text(encoding="utf-8")).body
                if isinstance(n, ast.FunctionDef)
            }
            if path.is_file()
            else set()
        )
        if bare not in defined:
            missing.append(entry)
    assert not missing, (
        f"tests/conftest.py SLOW names tests that do not exist (renamed or removed? update the "
        f"list): {missing}"
    )


def test_every_package_keeps_fast_tests():
    fast = fast_tests()
    assert len(fast) > 100, f"only {len(fast)} fast tests found: is the reader broken?"
    uncovered = [
        package
        for package in packages()
        if not any(
            name == package or name.startswith(f"{package}.")
            for names in fast.values()
            for name in names
        )
    ]
    assert not uncovered, (
        f"no fast test imports {uncovered}: keep at least one test of each package out of "
        "tests/conftest.py SLOW (on the tiny model), or add one"
    )


def test_the_tier_marks_are_registered():
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '"slow:' in text and '"real_model:' in text
