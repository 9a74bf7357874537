"""Package exports that load on first use.

``import interp`` (or ``interp.probe``) must not load torch and the model stack: the CLIs
answer ``--help`` in a fraction of a second and ``python -m interp.<module>`` does not import
its module twice. A package lists where each exported name lives and gets its module-level
``__getattr__`` and ``__dir__`` from :func:`lazy_exports`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str, namespace: dict[str, Any], exports: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` whose names live in ``exports``
    (name -> module); a loaded name is stored in ``namespace`` so it loads once."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted([*namespace, *exports])

    return __getattr__, __dir__
