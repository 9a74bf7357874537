"""Writing a cache: :func:`cache_activations` reuses a complete folder, or resumes one by
keeping every shard that passes its checks and writing the others, under the folder's lock."""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from interp.artifacts import (
    find_orphans,
    library_versions,
    remove_orphans,
    write_json_atomic,
)
from interp.cache.activation_set import ActivationSet, load_activation_set, load_complete
from interp.cache.capture import Capture, Progress
from interp.cache.key import (
    MANIFEST,
    MANIFEST_VERSION,
    CacheKey,
    CacheRepairWarning,
    check_key,
    full_check,
)
from interp.cache.shards import (
    Damage,
    Layout,
    ShardRecord,
    few_rows,
    read_manifest,
    read_records,
    record_path,
    shard_files,
    shard_name,
    verify_shard,
    write_shard,
)
from interp.data.tokens import EncodedTranscript, TokenSelection, check_tokens, encode_transcript
from interp.data.transcripts import Transcript, dataset_hash
from interp.hooks import parse_hook_name, stop_layer
from interp.locks import folder_lock
from interp.models import LoadedModel
from interp.paths import cache_root


def _check_request(
    transcripts: Sequence[Transcript], hooks: Sequence[str], tokens: str
) -> tuple[TokenSelection, tuple[str, ...]]:
    """Validate a request before any work (at least one hook and one transcript, a known token
    selection, residual hook names); returns the selection and the hooks sorted without
    repeats, so the same request always gives the same cache key."""
    if not hooks:
        raise ValueError("hooks is empty: name at least one hook, e.g. interp.hooks.hook_name(14)")
    if not transcripts:
        raise ValueError("no transcripts to cache")
    selection = check_tokens(tokens)
    names = tuple(sorted(set(hooks)))
    for h in names:
        parse_hook_name(h)
    return selection, names


def _repair(message: str) -> None:
    """Report a damaged or stray file found while caching (it is then rebuilt or removed)."""
    warnings.warn(message, CacheRepairWarning, stacklevel=4)


def _discard(path: Path) -> None:
    """Remove a shard and its pending record."""
    path.unlink(missing_ok=True)
    record_path(path.parent, path.name).unlink(missing_ok=True)


def _clear(folder: Path) -> None:
    """Remove every shard and shard record of ``folder`` (its manifest cannot be trusted)."""
    for path in [*shard_files(folder), *folder.glob("shard-*.json")]:
        path.unlink(missing_ok=True)


def _resume_manifest(folder: Path, key: CacheKey) -> dict[str, Any] | None:
    """The manifest to resume from, or None for a new folder or one whose manifest cannot be
    trusted (reported; its shards are removed). A manifest of other inputs is refused."""
    for orphan in remove_orphans(folder):
        _repair(f"removed {orphan}, left by an interrupted write")
    try:
        manifest = read_manifest(folder)
    except FileNotFoundError:
        return None
    except Damage as err:
        _repair(f"{err}; rebuilding the cache in {folder}")
        _clear(folder)
        return None
    check_key(CacheKey.from_json(manifest["key"]), key, folder)
    return manifest


def _known_records(folder: Path, manifest: dict[str, Any] | None) -> dict[str, ShardRecord]:
    """Shard records by name: the manifest's, then each pending record file written beside a
    shard since (a malformed one is reported and removed)."""
    known: dict[str, ShardRecord] = {}
    if manifest is not None:
        try:
            known = {r.name: r for r in read_records(manifest, folder)}
        except Damage as err:
            _repair(f"{err}; rebuilding its shards")
    for path in sorted(folder.glob("shard-*.json")):
        try:
            record = ShardRecord.from_json(json.loads(path.read_text(encoding="utf-8")), path)
        except (json.JSONDecodeError, UnicodeDecodeError, Damage) as err:
            _repair(f"{path} is not a valid shard record ({err}); rebuilding its shard")
            path.unlink(missing_ok=True)
            continue
        known[record.name] = record
    return known


def _usable_shards(
    folder: Path,
    manifest: dict[str, Any] | None,
    plan: Sequence[tuple[int, ...]],
    layout: Layout,
    full: bool,
) -> dict[int, ShardRecord]:
    """The shards already in ``folder`` that a resumed run keeps: each has a record, holds the
    rows the plan gives it and passes :func:`verify_shard`. Any other shard file is reported
    and removed, so it is written again."""
    known = _known_records(folder, manifest)
    usable: dict[int, ShardRecord] = {}
    for i, rows in enumerate(plan):
        path = folder / shard_name(i)
        record = known.pop(path.name, None)
        if record is None:
            if path.exists():
                _repair(f"{path} has no checksum record (its write was cut); rebuilding it")
                _discard(path)
            continue
        try:
            if record.rows != rows:
                raise Damage(
                    f"{path} was planned for rows {few_rows(record.rows)}, this run plans rows "
                    f"{few_rows(rows)} for it (another shard size)"
                )
            verify_shard(path, record, layout, full)
        except Damage as err:
            _repair(f"{err}; rebuilding it")
            _discard(path)
            continue
        usable[i] = record
    planned = {shard_name(i) for i in range(len(plan))}
    for path in shard_files(folder):
        if path.name not in planned:
            _repair(f"{path} is not part of this cache's shard plan; removed it")
            _discard(path)
    return usable


@dataclass(frozen=True)
class _Job:
    """One caching call: what to run on which transcripts, where, and how to check what the
    folder already holds (``full``: compare checksums too)."""

    model: LoadedModel
    transcripts: Sequence[Transcript]
    key: CacheKey
    folder: Path
    capture: Capture
    shard_size: int
    full: bool
    progress: bool

    def encode(self, i: int) -> EncodedTranscript:
        return encode_transcript(
            self.model.tokenizer, self.transcripts[i], self.key.tokens, self.key.max_tokens
        )

    def plan(self, shard_size: int) -> list[tuple[int, ...]]:
        """The rows of each shard: transcripts sorted by token count, cut every ``shard_size``.
        Only lengths are kept for the whole dataset; token ids are made again shard by shard,
        so memory does not grow with the number of transcripts."""
        lengths = [len(self.encode(i).input_ids) for i in range(len(self.transcripts))]
        order = sorted(range(len(self.transcripts)), key=lambda i: (lengths[i], i))
        return [tuple(order[i : i + shard_size]) for i in range(0, len(order), shard_size)]

    def manifest(self, shard_size: int, records: dict[int, ShardRecord], status: str) -> None:
        write_json_atomic(
            self.folder / MANIFEST,
            {
                "manifest_version": MANIFEST_VERSION,
                "status": status,
                "key": asdict(self.key),
                "d_model": self.model.d_model,
                "ids": [t.id for t in self.transcripts],
                "shard_size": shard_size,
                "stop_at_layer": self.capture.stop,
                "versions": library_versions(),
                "shards": [records[i].to_json() for i in sorted(records)],
            },
        )

    def run(self) -> ActivationSet:
        """Finish the cache (the caller holds the folder's lock): keep each shard that passes
        its checks, write the others, then mark the manifest complete."""
        manifest = _resume_manifest(self.folder, self.key)
        if manifest is not None and manifest.get("status") == "complete":
            try:
                return load_complete(self.folder, manifest, self.key, self.full)
            except Damage as err:
                _repair(f"{err}; rebuilding what is damaged")
        # A resumed run keeps the first run's shard plan, or its shards would not line up.
        shard_size = int(manifest["shard_size"]) if manifest is not None else self.shard_size
        plan = self.plan(shard_size)
        layout = Layout(self.key.hooks, self.model.d_model, self.key.per_token)
        records = _usable_shards(self.folder, manifest, plan, layout, self.full)
        self.manifest(shard_size, records, "incomplete")
        todo = [(i, rows) for i, rows in enumerate(plan) if i not in records]
        bar = Progress(sum(len(rows) for _, rows in todo), len(self.key.hooks), self.progress)
        for i, rows in todo:
            tensors = self.capture.shard(rows, {r: self.encode(r) for r in rows}, bar)
            records[i] = write_shard(self.folder, i, tensors)
        bar.close()
        self.manifest(shard_size, records, "complete")
        for path in self.folder.glob("shard-*.json"):
            path.unlink(missing_ok=True)
        return load_activation_set(self.folder, expect=self.key, verify=False)


def _reuse(folder: Path, key: CacheKey, full: bool) -> ActivationSet | None:
    """The complete cache in ``folder`` if every check passes, else None (the writing pass
    then reports what is wrong and rebuilds it). A manifest of other inputs is refused."""
    try:
        manifest = read_manifest(folder)
    except (FileNotFoundError, Damage):
        return None
    check_key(CacheKey.from_json(manifest["key"]), key, folder)
    if manifest.get("status") != "complete":
        return None
    try:
        return load_complete(folder, manifest, key, full)
    except Damage:
        return None


def cache_activations(
    model: LoadedModel,
    transcripts: Sequence[Transcript],
    hooks: Sequence[str],
    tokens: TokenSelection = "answer",
    *,
    batch_size: int = 16,
    max_tokens: int = 1024,
    per_token: bool = False,
    dtype: torch.dtype = torch.float32,
    shard_size: int = 256,
    cache_dir: Path | None = None,
    progress: bool = True,
    verify: bool | None = None,
) -> ActivationSet:
    """Cache pooled (and optionally per-token) activations of ``hooks`` for ``transcripts``.

    ``hooks`` is required and names residual hooks (:func:`interp.hooks.hook_name`); only
    those are captured and the pass stops after the deepest one. Returns the cached set,
    reusing an existing complete cache of the same inputs without running the model.

    What the folder already holds is checked first (see :func:`load_activation_set`;
    ``verify=True`` or ``INTERP_CACHE_VERIFY=1`` compares checksums too): a damaged file is
    reported (:class:`CacheRepairWarning`, naming it) and written again. One process at a
    time writes a folder (:func:`interp.locks.folder_lock`); another waits, then reuses it.
    """
    tokens, hooks = _check_request(transcripts, hooks, tokens)
    stop = stop_layer(hooks, model.n_layers)
    key = CacheKey(
        model_name=model.name,
        model_fingerprint=model.fingerprint,
        dataset_hash=dataset_hash(transcripts),
        n_transcripts=len(transcripts),
        hooks=hooks,
        tokens=tokens,
        max_tokens=max_tokens,
        per_token=per_token,
        dtype=str(dtype).removeprefix("torch."),
    )
    folder = (cache_dir or cache_root() / "activations") / key.digest()
    full = full_check(verify)
    with folder_lock(folder, shared=True):
        reused = _reuse(folder, key, full)
    if reused is not None and not find_orphans(folder):
        return reused
    capture = Capture(model, hooks, stop, batch_size, per_token, dtype)
    job = _Job(model, transcripts, key, folder, capture, shard_size, full, progress)
    with folder_lock(folder):
        return job.run()
