"""Atomic, durable file writes: the one implementation for both ``probes`` and ``interp``.

A file is written under a temporary name beside its destination (``.<name>.<random>.tmp``),
flushed to disk (``fsync``), renamed into place (``os.replace`` is atomic on POSIX and
Windows) and the rename itself is flushed by an ``fsync`` of the folder. So a crash, even a
power cut, leaves either the old file or the whole new one, never a half-written file under
the final name; at worst an orphan ``.*.tmp`` file, which the next run of a cache removes.

It lives here, not in ``interp``, because ``probes`` must never import ``interp`` while
``interp`` may import ``probes``; ``interp.artifacts`` builds its text, JSON and figure
writers on it. This module imports nothing but the standard library.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

#: ``fsync`` of a folder fails with these where a file system cannot flush folders (some
#: network and FUSE file systems); the rename is then as durable as that file system allows.
_NO_FOLDER_SYNC = {errno.EINVAL, errno.ENOTSUP, errno.EBADF, errno.EACCES, errno.EPERM}


def fsync_file(path: Path) -> None:
    """Flush the contents of the file at ``path`` to disk."""
    fd = os.open(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(path: Path) -> None:
    """Flush a folder's entries (a rename or a new file in it) to disk, where the platform can
    (Windows cannot open a folder, and its renames need no such step)."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in _NO_FOLDER_SYNC:
            raise
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, flush it to disk, rename it into
    place and flush the folder, so ``path`` is either the old file or the whole new one.

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
        fsync_file(tmp)
        os.replace(tmp, path)
        fsync_folder(path.parent)
    finally:
        tmp.unlink(missing_ok=True)
