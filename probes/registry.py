"""Things by name, failing loudly: the generic :class:`Registry`, and the probe kinds in one
(:data:`PROBES`; :mod:`probes.kinds` registers and builds them).

A registry refuses a name that is already taken and, asked for a name it does not have,
raises an error that lists the valid ones (as SAELens does). ``probes`` keeps its probe kinds
in one (``--probe logistic``); ``interp`` uses the same type for models, datasets, judges and
SAE architectures, each with its own error class.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

if TYPE_CHECKING:  # only the annotation of PROBES names it: base.py looks kinds up here
    from probes.base import Probe

T = TypeVar("T")

_UNSET: Any = object()


class Registry(Generic[T]):
    """Values of one kind by name.

    ``kind`` names the things in messages ("probe kind", "model", "dataset"); ``error`` is the
    ``ValueError`` subclass raised for an unknown or duplicate name, so each area keeps its
    own error type. ``builtins`` are modules that register the built-in entries when
    imported; they are imported on first use, so defining a registry imports nothing.
    An alias is a second name for an entry: it resolves to the entry and cannot be
    registered again, but :meth:`names` lists entries only.
    """

    def __init__(
        self, kind: str, error: type[ValueError] = ValueError, builtins: Sequence[str] = ()
    ) -> None:
        self.kind = kind
        self.error = error
        self._builtins = tuple(builtins)
        self._loaded = not self._builtins
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...
    @overload
    def register(self, name: str, value: T) -> T: ...

    def register(self, name: str, value: T = _UNSET) -> T | Callable[[T], T]:
        """Add ``value`` under ``name`` and return it; without ``value``, a decorator that
        does so. A name (or alias) that is already taken raises the registry's error."""
        if value is _UNSET:
            return lambda v: self.register(name, v)
        self._refuse_taken(name)
        self._entries[name] = value
        return value

    def alias(self, alias: str, name: str) -> None:
        """Make ``alias`` another name for the entry ``name``."""
        target = self.resolve(name)
        self._refuse_taken(alias)
        self._aliases[alias] = target

    def resolve(self, name: str) -> str:
        """The entry's own name for ``name`` (itself, or what the alias stands for)."""
        self._ensure_builtins()
        name = self._aliases.get(name, name)
        if name not in self._entries:
            raise self.error(f"unknown {self.kind} {name!r}; choose one of {self._listing()}")
        return name

    def get(self, name: str) -> T:
        """The value registered as ``name``; an unknown name raises an error listing the
        valid ones."""
        return self._entries[self.resolve(name)]

    def names(self) -> list[str]:
        """Registered names, sorted (aliases left out)."""
        self._ensure_builtins()
        return sorted(self._entries)

    def aliases(self) -> dict[str, str]:
        """Alias -> the name it stands for."""
        self._ensure_builtins()
        return dict(self._aliases)

    def __contains__(self, name: object) -> bool:
        self._ensure_builtins()
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {self._listing() if self._loaded else '...'})"

    def _listing(self) -> str:
        return ", ".join(sorted(self._entries)) or "(none registered)"

    def _refuse_taken(self, name: str) -> None:
        self._ensure_builtins()
        if name in self._entries:
            raise self.error(
                f"{self.kind} {name!r} is already registered (by {self._entries[name]!r}); "
                "pick another name"
            )
        if name in self._aliases:
            raise self.error(
                f"{self.kind} {name!r} is already registered as an alias of "
                f"{self._aliases[name]!r}; pick another name"
            )

    def _ensure_builtins(self) -> None:
        # Importing the modules runs their registrations (which land here again: the flag is
        # set first, so they do not recurse).
        if self._loaded:
            return
        self._loaded = True
        try:
            for module in self._builtins:
                importlib.import_module(module)
        except BaseException:
            self._loaded = False
            raise


#: Probe classes by their ``kind``; the built-in ones register when first needed.
PROBES: Registry[type[Probe]] = Registry(
    "probe kind", ValueError, builtins=("probes.logistic", "probes.mean_diff")
)
