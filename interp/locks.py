"""An advisory lock on a folder, so two processes never write the same folder at once.

``with folder_lock(folder):`` holds an exclusive ``flock`` on ``<folder>/.lock`` (created if
missing, never deleted: deleting a lock file lets two processes lock two different files). A
second process blocks until the first leaves the block, or exits: the kernel drops the lock of
a dead process, so a killed run never leaves a folder locked. ``shared=True`` takes a shared
lock, which many readers hold together and which excludes writers. ``name`` picks another
lock file of the same folder, for a lock that guards one step rather than the folder (the
activation cache's parallel workers share the folder lock and take ``.plan.lock`` in turn to
write its shard plan).

The lock is advisory: it binds only code that takes it (every writer of an activation cache
does). It needs ``fcntl`` (Linux, macOS); where that is missing (Windows) the block runs
unlocked. Importing this module loads nothing but the standard library.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"
PLAN_LOCK_NAME = ".plan.lock"

log = logging.getLogger(__name__)


@contextmanager
def folder_lock(
    folder: str | Path, *, shared: bool = False, name: str = LOCK_NAME
) -> Iterator[None]:
    """Hold the lock of ``folder`` (created if missing) for the ``with`` block, waiting for
    another process that holds it; ``shared`` for a reader's lock; ``name``: the lock file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    fd = os.open(folder / name, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process writing %s", folder)
            fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
