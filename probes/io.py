"""Atomic file writes: the one implementation for both ``probes`` and ``interp``.

A file is written under a temporary name beside its destination and renamed into place
(``os.replace`` is atomic on POSIX and Windows), so a crash never leaves a half-written file.

It lives here, not in ``interp``, because ``probes`` must never import ``interp`` while
``interp`` may import ``probes``; ``interp.artifacts`` builds its text, JSON and figure
writers on it. This module imports nothing but the standard library.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place.

    Missing parent folders are created. If ``write`` raises, ``path`` is left as it was and
    the temporary file is removed.
    """
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
