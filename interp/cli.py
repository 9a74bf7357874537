"""Turn a config dataclass into an ``argparse`` parser, and parsed flags back into it.

Fields become ``--kebab-case`` flags with the field's ``help``; ``bool`` fields get
``--flag/--no-flag``; tuples of ints are read by :func:`interp.hooks.parse_layers` and
tuples of strings as comma-separated lists.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from interp.hooks import parse_layers

C = TypeVar("C")


def _base_type(annotation: Any) -> Any:
    """``int | None`` -> int; ``tuple[int, ...]`` -> tuple."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _base_type(args[0])
    return origin or annotation


def _is_optional(annotation: Any) -> bool:
    return type(None) in typing.get_args(annotation)


def _optional(kind: Any) -> Any:
    """A flag type that also reads ``none`` / ``auto`` as None."""

    def parse(text: str) -> Any:
        return None if text.lower() in ("none", "auto") else kind(text)

    parse.__name__ = getattr(kind, "__name__", "value")  # argparse names it in errors
    return parse


def _comma_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def parser_for(
    cls: type, prog: str, aliases: dict[str, str] | None = None
) -> argparse.ArgumentParser:
    """A parser with one flag per field of dataclass ``cls``; ``aliases`` maps an extra flag
    (``--layer``) to a field (``layers``)."""
    parser = argparse.ArgumentParser(prog=prog, description=cls.__doc__)
    hints = typing.get_type_hints(cls)
    alias_of: dict[str, list[str]] = {}
    for flag, field_name in (aliases or {}).items():
        alias_of.setdefault(field_name, []).append(flag)
    for f in dataclasses.fields(cls):
        flags = [f"--{f.name.replace('_', '-')}", *alias_of.get(f.name, [])]
        kind = _base_type(hints[f.name])
        help_text = f.metadata.get("help", "")
        if kind is bool:
            parser.add_argument(
                *flags, action=argparse.BooleanOptionalAction, default=f.default, help=help_text
            )
            continue
        kwargs: dict[str, Any] = {"default": f.default, "dest": f.name}
        if kind is tuple:
            element = (typing.get_args(hints[f.name]) or (int,))[0]
            kwargs["type"] = parse_layers if element is int else _comma_list
            kwargs["help"] = f"{help_text} (default: {','.join(map(str, f.default))})"
        elif _is_optional(hints[f.name]):
            kwargs["type"] = _optional(kind)
            kwargs["help"] = f"{help_text} (default: {f.metadata.get('default_text', f.default)})"
        else:
            kwargs["type"] = kind
            kwargs["help"] = f"{help_text} (default: %(default)s)"
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        parser.add_argument(*flags, **kwargs)
    return parser


def config_from_args(cls: type[C], args: argparse.Namespace) -> C:
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})  # type: ignore[arg-type]


def run_cli(
    cls: type[C],
    run: Callable[[C], Any],
    argv: Sequence[str] | None,
    prog: str,
    report: Callable[[C, Any], str] | None = None,
    aliases: dict[str, str] | None = None,
) -> int:
    """The body of a command's ``main``: parse ``argv`` into a ``cls`` config, call
    ``run(config)`` and print ``report(config, result)``; returns the exit status.

    Bad input (a ``ValueError`` or a missing file: an unknown model, a malformed JSONL line, a
    layer out of range, ...) prints ``error: ...`` without a traceback and returns 2; the
    toolkit's own errors (``TranscriptError``, ``JudgeError``, ``FinetuneError``, ...) are
    ``ValueError``s.
    """
    args = parser_for(cls, prog=prog, aliases=aliases).parse_args(argv)
    try:
        config = config_from_args(cls, args)
        result = run(config)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if report is not None:
        print(report(config, result))
    return 0
