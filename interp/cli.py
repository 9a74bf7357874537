"""Turn a config dataclass into an ``argparse`` parser, and parsed flags back into it.

Fields become ``--kebab-case`` flags with the field's ``help``; ``bool`` fields get
``--flag/--no-flag``; tuples of ints are read by :func:`interp.config.as_layers` (``14``,
``0-3``, ``0,7,14``) and tuples of strings as comma-separated lists. A field without a default
is a required flag. Field metadata may also hold ``choices``, ``default_text`` (the default as
the help shows it), ``nargs`` (``"+"`` or ``"*"``: a tuple read from several words),
``repeat`` (a tuple collected from a repeated flag) and ``hidden`` (left out of ``--help``).

Every flag's type raises :class:`argparse.ArgumentTypeError` with the reason a value is wrong
(``--layers 3-1`` says how to write layers), never argparse's bare "invalid value"; a bad flag
is one ``error: ...`` line (exit status 2).

:func:`run_cli` is the one body of every command's ``main`` and its one error path: any
exception becomes one ``error: ...`` line on stderr and exit status 2 (an interrupt: exit 130),
without a traceback; ``--debug`` (a flag of every command) or ``INTERP_DEBUG=1`` shows it.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import os
import sys
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from interp.config import as_layers

C = TypeVar("C")

#: What a value of a builtin flag type must look like, for the error message.
_EXPECTED = {int: "an integer", float: "a number"}

#: Exit status of bad input (as argparse's) and of an interrupt (128 + SIGINT).
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

#: The fix for an ``OSError`` with a file name, by ``errno``.
_OS_FIX = {
    errno.ENOENT: "check the path",
    errno.EISDIR: "pass a file, not a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EACCES: "check its permissions",
    errno.EEXIST: "remove it or choose another path",
    errno.ENOSPC: "free some disk space",
}

_DEBUG_HINT = "(run with --debug for the traceback)"


def _base_type(annotation: Any) -> Any:
    """``int | None`` -> int; ``tuple[int, ...]`` -> tuple."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _base_type(args[0])
    return origin or annotation


def _is_optional(annotation: Any) -> bool:
    return type(None) in typing.get_args(annotation)


def _tuple_element(annotation: Any) -> Any:
    """``tuple[int, ...]`` (or ``tuple[str, ...] | None``) -> int (str)."""
    if _is_optional(annotation):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return (typing.get_args(annotation) or (int,))[0]


def flag_type(parse: Callable[[str], Any], optional: bool = False) -> Callable[[str], Any]:
    """``parse`` as an argparse ``type``: a ``ValueError`` becomes an
    :class:`argparse.ArgumentTypeError` carrying the explanation (``parse``'s own message, or
    what an ``int`` / ``float`` looks like), so argparse prints it instead of "invalid value".
    With ``optional``, ``none`` and ``auto`` read as None."""
    expected = _EXPECTED.get(parse)  # type: ignore[call-overload]

    def convert(text: str) -> Any:
        if optional and text.lower() in ("none", "auto"):
            return None
        try:
            return parse(text)
        except (TypeError, ValueError) as err:
            if expected is None:
                raise argparse.ArgumentTypeError(str(err)) from None
            also = " (or 'none')" if optional else ""
            raise argparse.ArgumentTypeError(f"expected {expected}{also}, got {text!r}") from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def _comma_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _default_help(f: dataclasses.Field, required: bool) -> str:
    help_text = f.metadata.get("help", "")
    if required:
        return f"{help_text} (required)"
    if "default_text" in f.metadata:
        return f"{help_text} (default: {f.metadata['default_text']})"
    if isinstance(f.default, tuple):
        return f"{help_text} (default: {','.join(map(str, f.default))})"
    return f"{help_text} (default: {f.default})"


def _flag_kwargs(f: dataclasses.Field, annotation: Any) -> dict[str, Any]:
    """``add_argument`` keywords for a non-bool field."""
    required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    kwargs: dict[str, Any] = {"dest": f.name, "help": _default_help(f, required)}
    if required:
        kwargs["required"] = True
    else:
        kwargs["default"] = f.default
    kind = _base_type(annotation)
    if kind is tuple:
        element = _tuple_element(annotation)
        if "nargs" in f.metadata or f.metadata.get("repeat"):
            # One word per element: ``--variant a b`` or ``--labels-dir a --labels-dir b``.
            kwargs["type"] = flag_type(element)
            if f.metadata.get("repeat"):
                kwargs["action"] = "append"
            else:
                kwargs["nargs"] = f.metadata["nargs"]
        else:
            kwargs["type"] = flag_type(as_layers if element is int else _comma_list)
    else:
        kwargs["type"] = flag_type(kind, optional=_is_optional(annotation))
    if "choices" in f.metadata:
        kwargs["choices"] = f.metadata["choices"]
    if f.metadata.get("hidden"):
        kwargs["help"] = argparse.SUPPRESS
    return kwargs


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose error is one ``error: ...`` line (exit status 2)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(EXIT_BAD_INPUT, f"error: {message} ({self.prog} --help lists the options)\n")


def parser_for(
    cls: type, prog: str, aliases: dict[str, str] | None = None
) -> argparse.ArgumentParser:
    """A parser with one flag per field of dataclass ``cls`` and ``--debug`` (not a field: show
    the traceback of an error); ``aliases`` maps an extra flag (``--layer``) to a field
    (``layers``)."""
    parser = _Parser(prog=prog, description=cls.__doc__)
    hints = typing.get_type_hints(cls)
    alias_of: dict[str, list[str]] = {}
    for flag, field_name in (aliases or {}).items():
        alias_of.setdefault(field_name, []).append(flag)
    for f in dataclasses.fields(cls):
        flags = [f"--{f.name.replace('_', '-')}", *alias_of.get(f.name, [])]
        if _base_type(hints[f.name]) is bool:
            parser.add_argument(
                *flags,
                action=argparse.BooleanOptionalAction,
                default=f.default,
                help=f.metadata.get("help", ""),
            )
        else:
            parser.add_argument(*flags, **_flag_kwargs(f, hints[f.name]))
    parser.add_argument(
        "--debug",
        action="store_true",
        help="on an error, show the traceback instead of one error line (or set INTERP_DEBUG=1)",
    )
    return parser


def config_from_args(cls: type[C], args: argparse.Namespace) -> C:
    """The ``cls`` config of parsed flags (a list from ``nargs`` or a repeated flag becomes a
    tuple); its ``__post_init__`` validates."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**values)


def debug_requested(flag: bool = False) -> bool:
    """``--debug`` was given, or the environment sets ``INTERP_DEBUG`` (to anything but
    ``0``/``false``/``no``/empty)."""
    value = os.environ.get("INTERP_DEBUG", "").strip().lower()
    return flag or value not in ("", "0", "false", "no")


def _os_error_message(err: OSError) -> str:
    """``path: reason (fix)`` for an ``OSError`` about a file; its own text otherwise."""
    if err.filename is None or not err.strerror:
        return str(err)
    fix = _OS_FIX.get(err.errno)  # type: ignore[call-overload]
    where = err.filename if err.filename2 is None else f"{err.filename} -> {err.filename2}"
    return f"{where}: {err.strerror}" + (f" ({fix})" if fix else "")


def _is_expected(err: BaseException) -> bool:
    """An error whose message is written for the user: a plain ``ValueError``, the toolkit's
    own errors (``ConfigError``, ``TranscriptError``, ...) and ``OSError``."""
    if isinstance(err, OSError) or type(err) is ValueError:
        return True
    return isinstance(err, ValueError) and type(err).__module__.split(".")[0] in (
        "interp",
        "probes",
        "experiments",
    )


def error_message(err: BaseException) -> str:
    """The one line (after ``error: ``) that stands for ``err``: the toolkit's own errors and
    ``OSError`` as they are (which file, which line, the fix); any other exception prefixed
    with its class name and the hint to run with ``--debug``. Notes added to the exception
    (``add_note``) follow its message."""
    if isinstance(err, KeyboardInterrupt):
        return "interrupted"
    if isinstance(err, OSError):
        text = _os_error_message(err)
    elif isinstance(err, json.JSONDecodeError):
        text = f"not valid JSON at line {err.lineno} column {err.colno}: {err.msg}"
    elif isinstance(err, UnicodeDecodeError):
        text = f"not UTF-8 text (byte {err.start}: {err.reason}); save the file as UTF-8"
    else:
        text = str(err) or "(no message)"
    notes = getattr(err, "__notes__", None) or []
    text = "; ".join([text, *map(str, notes)])
    if _is_expected(err):
        return text
    return f"{type(err).__name__}: {text} {_DEBUG_HINT}"


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

    A malformed flag value makes argparse exit with status 2 and one ``error: ...`` line with
    the flag type's explanation. Any exception raised later (bad input: an unknown model, a
    malformed JSONL line, a layer out of range, a corrupt file; or a bug) prints one
    ``error: ...`` line (:func:`error_message`) without a traceback and returns 2; an interrupt
    prints ``error: interrupted`` and returns 130. With ``--debug`` or ``INTERP_DEBUG=1`` the
    exception is re-raised, traceback and all.
    """
    args = parser_for(cls, prog=prog, aliases=aliases).parse_args(argv)
    try:
        config = config_from_args(cls, args)
        result = run(config)
        text = None if report is None else report(config, result)
    except (Exception, KeyboardInterrupt) as err:
        if debug_requested(args.debug):
            raise
        print(f"error: {error_message(err)}", file=sys.stderr)
        return EXIT_INTERRUPTED if isinstance(err, KeyboardInterrupt) else EXIT_BAD_INPUT
    if text is not None:
        print(text)
    return 0
