"""Probe kinds by name: register a probe class under its ``kind``, list the kinds, build one.

The kinds live in :data:`probes.registry.PROBES`, which :meth:`probes.base.Probe.load` reads
to pick the class of a saved probe; these helpers sit above :mod:`probes.base` (they are typed
with :class:`~probes.base.Probe`), so neither module imports the other in a circle.
"""

from __future__ import annotations

from typing import Any, TypeVar

from probes.base import Probe
from probes.registry import PROBES

P = TypeVar("P", bound=type[Probe])


def register_probe(cls: P) -> P:
    """Class decorator: register a probe under its ``kind``; duplicates are refused."""
    PROBES.register(cls.kind, cls)
    return cls


def probe_kinds() -> list[str]:
    return PROBES.names()


def probe_class(kind: str) -> type[Probe]:
    return PROBES.get(kind)


def make_probe(kind: str, **settings: Any) -> Probe:
    return probe_class(kind)(**settings)
