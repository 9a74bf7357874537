"""Where artefacts live, and atomic file writes.

Everything the toolkit writes goes under the cache root: ``$INTERP_CACHE`` if set, else
``./cache`` (the repository's ``cache/`` when run from its root). Files are written to a
temporary name and renamed, so an interrupted run never leaves a half-written file behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def cache_root() -> Path:
    """The cache root, read at call time (importing this module reads nothing)."""
    return Path(os.environ.get("INTERP_CACHE", "cache"))


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def read_jsonl(path: Path, error: type[Exception] = ValueError) -> Iterator[tuple[str, Any]]:
    """``("file:line", decoded value)`` for each non-blank line of a JSON Lines file.

    A line that is not valid JSON raises ``error`` naming the file, line and column.
    """
    with Path(path).open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as err:
                raise error(
                    f"{where}: not valid JSON ({err.msg} at column {err.colno}); "
                    "each line must be one complete JSON object"
                ) from None
