"""Atomic, durable file writes: the one implementation for both ``probes`` and ``interp``.

A file is written under a temporary name beside its destination (``.<name>.<random>.tmp``),
flushed to disk (``fsync``), renamed into place (``os.replace`` is atomic on POSIX and
Windows) and the rename itself is flushed by an ``fsync`` of the folder. So a crash, even a
power cut, leaves either the old file or the whole new one, never a half-written file under
the final name; at worst an orphan ``.*.tmp`` file, which the next run of a cache removes.

It lives here, not in ``interp``, because ``probes`` must never import ``interp`` while
``interp`` may import ``probes``; ``interp.artifacts`` builds its text, JSON and figure
writers on it. The checksum mechanism below (:func:`record_checksums`, :func:`seal` and their
checks) is shared the same way. This module imports nothing but the standard library.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

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


# --- checksums ---------------------------------------------------------------------------------
#
# One mechanism for every artefact the toolkit writes and later trusts (probes, erasers, SAEs,
# patching parts, fine-tuning checkpoints, generation files): the manifest beside the files
# records each file's size and BLAKE2b checksum (:func:`record_checksums`), and a JSON
# manifest or part seals its own contents (:func:`seal`); a reader checks both
# (:func:`check_checksums`, :func:`check_seal`) before it trusts anything. It lives here for
# the reason :func:`atomic_write` does (``probes`` saves probes and may not import
# ``interp``); ``interp.artifacts`` exposes it.

#: The key of a sealed JSON object that holds the checksum of the rest of it.
SEAL_KEY = "blake2b"
#: Bytes per read when hashing a file (large reads, so hashing runs at disk speed).
_CHUNK = 1 << 22


class UncheckedArtifactWarning(UserWarning):
    """An artefact saved before checksums were recorded: it is read after the structural
    checks only; re-saving it (or re-running what made it) records them."""


def new_blake2b() -> Any:
    """A fresh BLAKE2b hash (32-byte digest) to feed bytes as they are written (a file that
    grows by appends); ``.hexdigest()`` equals :func:`file_blake2b` of the same bytes."""
    return hashlib.blake2b(digest_size=32)


def file_blake2b(path: str | Path) -> str:
    """The BLAKE2b checksum (32-byte digest, hex) of the file at ``path``, read in chunks."""
    digest = new_blake2b()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def record_checksums(folder: str | Path, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``{name: {"bytes": size, "blake2b": checksum}}`` of the files ``names`` in ``folder``,
    the record a manifest keeps under ``files`` and :func:`check_checksums` compares."""
    folder = Path(folder)
    return {
        name: {"bytes": (folder / name).stat().st_size, "blake2b": file_blake2b(folder / name)}
        for name in sorted(names)
    }


def check_checksums(
    folder: str | Path,
    files: object,
    *,
    manifest: str,
    fix: str = "",
    error: type[Exception] = ValueError,
    required: Iterable[str] = (),
) -> None:
    """Raise ``error`` unless each file recorded in ``files`` (the ``files`` record of
    :func:`record_checksums`, read from the file ``manifest`` of ``folder``) has its recorded
    size and checksum, and each of ``required`` is recorded. Messages name the file, the
    problem and end with ``fix``: ``<path>: 40 bytes, but manifest.json records 48 (truncated
    or replaced); <fix>`` (no ``fix``: the message ends after the problem)."""
    folder, end = Path(folder), f"; {fix}" if fix else ""
    if not isinstance(files, dict) or not all(isinstance(r, dict) for r in files.values()):
        raise error(f"{folder / manifest}: its 'files' record is not an object of records{end}")
    for name in required:
        if name not in files:
            raise error(f"{folder / manifest}: records no size and checksum of {name}{end}")
    for name, record in files.items():
        path = folder / name
        if Path(name).name != name or not path.is_file():
            raise error(f"{path}: missing (recorded in {manifest}){end}")
        size = path.stat().st_size
        if size != record.get("bytes"):
            raise error(
                f"{path}: {size} bytes, but {manifest} records {record.get('bytes')} "
                f"(truncated or replaced){end}"
            )
        if file_blake2b(path) != record.get("blake2b"):
            raise error(
                f"{path}: checksum differs from the one in {manifest} (edited or damaged){end}"
            )


def json_blake2b(data: object) -> str:
    """The BLAKE2b checksum of ``data``'s canonical JSON (sorted keys, no spaces), so the
    same contents give the same checksum whatever the layout of the file."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=32).hexdigest()


def seal(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (normalised through JSON, as it will read back) plus :data:`SEAL_KEY`: the
    checksum of everything else in it, which :func:`check_seal` compares."""
    plain = json.loads(json.dumps({k: v for k, v in data.items() if k != SEAL_KEY}))
    return {**plain, SEAL_KEY: json_blake2b(plain)}


def check_seal(
    data: dict[str, Any], *, where: str | Path, fix: str, error: type[Exception] = ValueError
) -> bool:
    """Raise ``error`` naming ``where`` if sealed ``data`` (:func:`seal`) was changed after it
    was written; ``False`` if it carries no seal (written before seals were recorded: the
    caller decides), ``True`` if the seal holds."""
    if SEAL_KEY not in data:
        return False
    rest = {k: v for k, v in data.items() if k != SEAL_KEY}
    if data[SEAL_KEY] != json_blake2b(rest):
        raise error(
            f"{where}: its contents do not match the checksum recorded in it "
            f"({SEAL_KEY!r}): it was edited or damaged after it was written; {fix}"
        )
    return True
