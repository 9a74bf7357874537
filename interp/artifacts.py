"""Writing and checking artefacts: the one place for each mechanism.

- :func:`atomic_write`, :func:`write_text_atomic`, :func:`write_json_atomic`: a file is
  written under a temporary name and renamed, so an interrupted run never leaves a half-written
  file. The primitive is :func:`probes.io.atomic_write` (``probes`` may not import ``interp``,
  so the one implementation lives there); it is imported on first use because importing the
  ``probes`` package loads torch, and modules such as :mod:`interp.data.transcripts` must
  stay importable without it.
- :func:`write_bytes_atomic`: the same for bytes already in memory (a serialised shard).
- :func:`blake2b_hex`, :func:`file_blake2b`: the checksum recorded beside saved files (cache
  shards, fine-tune checkpoints).
- :func:`record_checksums` / :func:`check_checksums`: the ``files`` record (size and checksum
  of each file) an artefact's manifest keeps, and its check on load; :func:`seal` /
  :func:`check_seal`: a JSON manifest or part that carries the checksum of its own contents;
  :func:`warn_unchecked` for an older artefact saved without them. One implementation, in
  :mod:`probes.io` (``probes`` saves probes and may not import ``interp``).
- :func:`remove_orphans`: delete what cut writes leave in a folder (``.*.tmp``,
  ``*.partial``); call it only while holding the folder's lock (:mod:`interp.locks`).
- :func:`publish_folder`: a folder (a saved model, an SAE) is built as ``<name>.partial/`` and
  renamed to ``<name>/`` when complete, so a folder that exists is whole.
- :func:`write_figure`: a plotly figure as a self-contained HTML page (plotly.js embedded, so
  it renders on a machine without internet), written atomically.
- :func:`library_versions`: the versions recorded beside every result.
- :func:`check_same`: compare the settings saved with an artefact with the requested ones and
  refuse with one error format that lists every difference and says how to fix it.
- :func:`read_jsonl`: read a JSON Lines file with errors that name the line; :func:`read_json`
  reads one JSON file with errors that name the file.

Importing this module loads nothing but the standard library.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

#: Libraries whose versions are recorded with results: key -> distribution name.
LIBRARIES = {
    "torch": "torch",
    "transformers": "transformers",
    "transformer_lens": "transformer-lens",
    "sae_lens": "sae-lens",
    "peft": "peft",
    "accelerate": "accelerate",
    "tokenizers": "tokenizers",
    "safetensors": "safetensors",
    "numpy": "numpy",
    "plotly": "plotly",
}


class ArtifactMismatchError(ValueError):
    """An artefact made with other settings than the ones requested."""


# --- files -----------------------------------------------------------------------------------


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place
    (parent folders are created)."""
    from probes.io import atomic_write as write_then_rename

    write_then_rename(path, write)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON (anything else as ``str``) to ``path`` atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def blake2b_hex(data: bytes) -> str:
    """The BLAKE2b checksum (32-byte digest, hex) recorded for a file's bytes."""
    return hashlib.blake2b(data, digest_size=32).hexdigest()


def file_blake2b(path: str | Path) -> str:
    """:func:`blake2b_hex` of the file at ``path``, read in chunks
    (:func:`probes.io.file_blake2b`, the one implementation)."""
    from probes.io import file_blake2b as checksum

    return checksum(path)


# --- checksums of saved artefacts (the one mechanism: probes.io) -----------------------------


def new_blake2b() -> Any:
    """An incremental BLAKE2b hash for a file written by appends (:func:`probes.io.new_blake2b`)."""
    from probes.io import new_blake2b as fresh

    return fresh()


def record_checksums(folder: str | Path, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The ``files`` record (size and BLAKE2b of each of ``names`` in ``folder``) that an
    artefact's manifest keeps; see :func:`probes.io.record_checksums`."""
    from probes.io import record_checksums as record

    return record(folder, names)


def check_checksums(
    folder: str | Path,
    files: object,
    *,
    manifest: str,
    fix: str = "",
    error: type[Exception] = ValueError,
    required: Iterable[str] = (),
) -> None:
    """Raise ``error`` naming the file unless every file in the ``files`` record of
    ``folder``'s ``manifest`` has its recorded size and checksum (and ``required`` ones are
    recorded); see :func:`probes.io.check_checksums`."""
    from probes.io import check_checksums as check

    check(folder, files, manifest=manifest, fix=fix, error=error, required=required)


def seal(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` plus the checksum of its own contents; see :func:`probes.io.seal`."""
    from probes.io import seal as sealed

    return sealed(data)


def check_seal(
    data: dict[str, Any], *, where: str | Path, fix: str, error: type[Exception] = ValueError
) -> bool:
    """Raise ``error`` if sealed JSON ``data`` was edited after it was written; ``False`` when
    it has no seal (older files); see :func:`probes.io.check_seal`."""
    from probes.io import check_seal as check

    return check(data, where=where, fix=fix, error=error)


def warn_unchecked(where: str | Path, fix: str) -> None:
    """Warn (:class:`probes.io.UncheckedArtifactWarning`) that the artefact at ``where`` was
    saved before checksums were recorded, so it is read after structural checks only."""
    import warnings

    from probes.io import UncheckedArtifactWarning

    warnings.warn(
        f"{where}: saved without checksums (by an older version), so damage that keeps its "
        f"structure cannot be detected; {fix}",
        UncheckedArtifactWarning,
        stacklevel=3,
    )


def find_orphans(folder: str | Path) -> list[Path]:
    """What interrupted writes left directly in ``folder`` (see :func:`remove_orphans`)."""
    return sorted(Path(folder).glob(".*.tmp")) + sorted(Path(folder).glob("*.partial"))


def remove_orphans(folder: str | Path) -> list[Path]:
    """Delete what interrupted writes left directly in ``folder``: temporary files of
    :func:`atomic_write` (``.*.tmp``) and unfinished :func:`publish_folder` folders
    (``*.partial``). Returns what was removed.

    Only call it while no other process writes to ``folder`` (hold its lock): a live writer's
    temporary file looks the same as an orphan.
    """
    removed = []
    for path in find_orphans(folder):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def write_figure(fig: Any, path: str | Path) -> Path:
    """Write a plotly figure to ``path`` as one self-contained HTML page, atomically.

    plotly.js is embedded (about 4.5 MB) rather than linked: a page that loads plotly.js from
    the internet is blank on an offline machine, where these results are often read.
    """
    path = Path(path)
    write_text_atomic(path, fig.to_html(include_plotlyjs=True, full_html=True))
    return path


@contextmanager
def publish_folder(final: str | Path) -> Iterator[Path]:
    """Build a folder under ``<final>.partial/`` and rename it to ``final`` when the block ends:
    ``with publish_folder(out) as partial: model.save_pretrained(partial)``.

    The partial folder is emptied first (a crashed run may have left one) and created. On
    success an existing ``final`` is replaced; if the block raises, ``final`` is untouched
    and the partial folder stays behind, to be cleared by the next attempt.
    """
    final = Path(final)
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    yield partial
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)


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


def read_json(path: str | Path, error: type[Exception] = ValueError, fix: str = "") -> Any:
    """The decoded contents of a JSON file; a file that is not valid JSON (empty, truncated,
    not UTF-8) raises ``error`` naming the file: ``<path>: not valid JSON (<reason>)``,
    followed by ``; <fix>`` when the caller knows how to repair it."""
    end = f"; {fix}" if fix else ""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise error(
            f"{path}: not valid JSON ({err.msg} at line {err.lineno} column {err.colno}){end}"
        ) from None
    except UnicodeDecodeError as err:
        raise error(f"{path}: not valid JSON (not UTF-8 text: {err.reason}){end}") from None


# --- provenance and checks -------------------------------------------------------------------


def library_versions() -> dict[str, str]:
    """Versions of Python and of the installed :data:`LIBRARIES` (read from the installed
    distributions' metadata, so a module without ``__version__`` is still known); a library
    that is not installed is left out."""
    versions = {"python": platform.python_version()}
    for key, distribution in LIBRARIES.items():
        try:
            versions[key] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return versions


_ABSENT = object()


def differences(
    found: Mapping[str, Any], wanted: Mapping[str, Any], prefix: str = ""
) -> list[tuple[str, Any, Any]]:
    """``(key, saved, requested)`` for every key whose value differs, sorted by key; nested
    dicts are compared key by key (``config.top_p``). A key missing on one side counts as a
    difference (its value reads ``<absent>``)."""
    diffs: list[tuple[str, Any, Any]] = []
    for key in sorted(set(found) | set(wanted), key=str):
        old, new = found.get(key, _ABSENT), wanted.get(key, _ABSENT)
        name = f"{prefix}{key}"
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            diffs += differences(old, new, prefix=f"{name}.")
        elif old != new:
            diffs.append((name, old, new))
    return diffs


def _show(value: Any) -> str:
    return "<absent>" if value is _ABSENT else repr(value)


def check_same(
    found: Mapping[str, Any],
    wanted: Mapping[str, Any],
    *,
    where: str | Path,
    fix: str,
    error: type[Exception] = ArtifactMismatchError,
) -> None:
    """Raise ``error`` if the settings saved with an artefact (``found``) differ from the
    requested ones (``wanted``).

    The message has one format everywhere: ``<where> was made with other settings (key:
    saved X, requested Y; ...); <fix>``, listing every differing key (nested dicts by dotted
    key), so a user sees at once what to change or which folder to delete.
    """
    diffs = differences(found, wanted)
    if diffs:
        listed = "; ".join(f"{k}: saved {_show(a)}, requested {_show(b)}" for k, a, b in diffs)
        raise error(f"{where} was made with other settings ({listed}); {fix}")
