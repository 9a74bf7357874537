"""Probe kinds by name (``--probe logistic``); unknown names list the valid ones."""

from __future__ import annotations

from typing import Any, TypeVar

from probes.base import Probe

P = TypeVar("P", bound=type[Probe])

_KINDS: dict[str, type[Probe]] = {}


def register_probe(cls: P) -> P:
    """Class decorator: register a probe under its ``kind``; duplicates are refused."""
    if cls.kind in _KINDS:
        raise ValueError(f"probe kind {cls.kind!r} is already registered by {_KINDS[cls.kind]}")
    _KINDS[cls.kind] = cls
    return cls


def probe_kinds() -> list[str]:
    _ensure_builtins()
    return sorted(_KINDS)


def probe_class(kind: str) -> type[Probe]:
    _ensure_builtins()
    if kind not in _KINDS:
        raise ValueError(f"unknown probe kind {kind!r}; choose one of {', '.join(sorted(_KINDS))}")
    return _KINDS[kind]


def make_probe(kind: str, **settings: Any) -> Probe:
    return probe_class(kind)(**settings)


def _ensure_builtins() -> None:
    # Importing the modules runs their @register_probe decorators.
    import probes.logistic
    import probes.mean_diff  # noqa: F401
