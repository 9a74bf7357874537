"""Writing a cache: :func:`cache_activations` reuses a complete folder, or resumes one by
keeping every shard that passes its checks and writing the others, under the folder's lock."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from interp.artifacts import (
    find_orphans,
    library_versions,
    remove_orphans,
    write_json_atomic,
)
from interp.cache.activation_set import ActivationSet, load_complete
from interp.cache.budget import Budget, cache_bytes, check_free_space, format_bytes
from interp.cache.capture import Capture, Progress
from interp.cache.key import (
    MANIFEST,
    MANIFEST_VERSION,
    CacheIncompleteError,
    CacheKey,
    CacheRepairWarning,
    Verify,
    check_key,
    verify_mode,
)
from interp.cache.request import CacheRequest
from interp.cache.shards import (
    Damage,
    Layout,
    ShardRecord,
    check_coverage,
    check_shard,
    few_rows,
    read_manifest,
    read_records,
    record_path,
    shard_files,
    shard_name,
    write_shard,
)
from interp.data.tokens import EncodedTranscript, TokenSelection, check_tokens, encode_transcript
from interp.data.transcripts import Transcript, dataset_hash
from interp.hooks import parse_hook_name, stop_layer
from interp.locks import PLAN_LOCK_NAME, folder_lock
from interp.models import LoadedModel
from interp.paths import cache_root
from interp.workers import WorkerSplit


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


def _resume_manifest(folder: Path, key: CacheKey, orphans: bool = True) -> dict[str, Any] | None:
    """The manifest to resume from, or None for a new folder or one whose manifest cannot be
    trusted (reported; its shards are removed). A manifest of other inputs is refused.
    ``orphans``: also remove leftovers of cut writes (only a process that writes the folder
    alone may: a parallel worker's temporary file is a write under way)."""
    for orphan in remove_orphans(folder) if orphans else []:
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
    verify: Verify,
    items: Iterable[int] | None = None,
) -> dict[int, ShardRecord]:
    """The shards already in ``folder`` that a resumed run keeps: each has a record, holds the
    rows the plan gives it and passes :func:`check_shard`; any other is reported and removed,
    so it is written again. ``items``: the shard numbers to check (default: all). Only a check
    of every shard removes shard files outside the plan: a worker checking its own share
    leaves the rest of the folder to the workers writing it."""
    known = _known_records(folder, manifest)
    usable: dict[int, ShardRecord] = {}
    for i in range(len(plan)) if items is None else items:
        path = folder / shard_name(i)
        record = known.pop(path.name, None)
        if record is None:
            if path.exists():
                _repair(f"{path} has no checksum record (its write was cut); rebuilding it")
                _discard(path)
            continue
        try:
            if record.rows != plan[i]:
                raise Damage(
                    f"{path} was planned for rows {few_rows(record.rows)}, this run plans rows "
                    f"{few_rows(plan[i])} for it (another shard size)"
                )
            record, _ = check_shard(path, record, layout, verify, caching=True)
        except Damage as err:
            _repair(f"{err}; rebuilding it")
            _discard(path)
            continue
        usable[i] = record
    if items is None:
        planned = {shard_name(i) for i in range(len(plan))}
        for path in shard_files(folder):
            if path.name not in planned:
                _repair(f"{path} is not part of this cache's shard plan; removed it")
                _discard(path)
    return usable


@dataclass(frozen=True)
class ShardCut:
    """Where shards are cut: after ``size`` transcripts, or earlier when the next transcript
    would bring the shard's selected tokens over ``tokens`` (for per-token caches, whose
    shard is held in memory until it is written; a transcript alone may exceed it)."""

    size: int
    tokens: int | None = None

    @classmethod
    def of(cls, manifest: dict[str, Any]) -> ShardCut:
        return cls(int(manifest["shard_size"]), manifest.get("shard_tokens"))

    def cut(self, order: Sequence[int], n_selected: Sequence[int]) -> list[tuple[int, ...]]:
        shards: list[tuple[int, ...]] = []
        current: list[int] = []
        tokens = 0
        for row in order:
            over = self.tokens is not None and tokens + n_selected[row] > self.tokens
            if current and (len(current) == self.size or over):
                shards.append(tuple(current))
                current, tokens = [], 0
            current.append(row)
            tokens += n_selected[row]
        return [*shards, tuple(current)] if current else shards


@dataclass(frozen=True)
class Plan:
    """Which rows each shard holds: transcripts sorted by token count (``lengths``), cut as
    :class:`ShardCut` says. It depends on the transcripts and the cut only, never on how many
    workers share the job. ``n_selected`` counts each row's selected tokens (for the disk
    estimate of a per-token cache)."""

    shards: list[tuple[int, ...]]
    lengths: list[int]
    n_selected: list[int]

    def rows(self, items: Iterable[int]) -> int:
        return sum(len(self.shards[i]) for i in items)

    def tokens(self, items: Iterable[int]) -> int:
        return sum(self.n_selected[r] for i in items for r in self.shards[i])


@dataclass(frozen=True)
class ShareReport:
    """What one process did for a cache: of the ``n_shards`` planned, it was given
    ``assigned`` and wrote ``written`` of them (the rest were on disk and passed their
    checks), in ``seconds``."""

    folder: Path
    n_shards: int
    assigned: int
    written: int
    seconds: float


@dataclass(frozen=True)
class CacheJob:
    """One cache: what to run on which transcripts, where, and how to check what the folder
    already holds (``verify``, :class:`~interp.cache.key.Verify`). A single process runs it whole
    (:meth:`run`); parallel workers each write their share (:meth:`write_share`) and one
    :meth:`finalize` checks every shard and completes the manifest. Callers hold the folder's
    lock (see :func:`cache_activations`, :mod:`interp.cache.parallel`)."""

    model: LoadedModel
    transcripts: Sequence[Transcript]
    key: CacheKey
    folder: Path
    capture: Capture
    shard_cut: ShardCut
    verify: Verify
    progress: bool

    @property
    def layout(self) -> Layout:
        key = self.key
        return Layout(key.hooks, self.model.d_model, key.per_token, key.digest(), key.dtype)

    def encode(self, i: int) -> EncodedTranscript:
        return encode_transcript(
            self.model.tokenizer, self.transcripts[i], self.key.tokens, self.key.max_tokens
        )

    def plan(self, cut: ShardCut) -> Plan:
        """The shard plan. Only counts are kept for the whole dataset; token ids are made
        again shard by shard, so memory does not grow with the number of transcripts."""
        lengths, selected = [], []
        for i in range(len(self.transcripts)):
            encoded = self.encode(i)
            lengths.append(len(encoded.input_ids))
            selected.append(len(encoded.selected))
        order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
        return Plan(cut.cut(order, selected), lengths, selected)

    def manifest(
        self, cut: ShardCut, records: dict[int, ShardRecord], status: str
    ) -> dict[str, Any]:
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "status": status,
            "key": asdict(self.key),
            "d_model": self.model.d_model,
            "ids": [t.id for t in self.transcripts],
            "shard_size": cut.size,
            "shard_tokens": cut.tokens,
            "stop_at_layer": self.capture.stop,
            "versions": library_versions(),
            "shards": [records[i].to_json() for i in sorted(records)],
        }
        write_json_atomic(self.folder / MANIFEST, manifest)
        return manifest

    def _verified(self, manifest: dict[str, Any]) -> bool:
        """Whether ``manifest`` is complete and every shard it lists passes its checks
        (:func:`check_shard`); damage is reported."""
        if manifest.get("status") != "complete":
            return False
        try:
            records = read_records(manifest, self.folder)
            check_coverage(records, self.key.n_transcripts, self.folder / MANIFEST)
            if len(manifest.get("ids", [])) != self.key.n_transcripts:
                raise Damage(f"{self.folder / MANIFEST} lists another number of ids")
            for record in records:
                check_shard(
                    self.folder / record.name, record, self.layout, self.verify, caching=True
                )
        except Damage as err:
            _repair(f"{err}; rebuilding what is damaged")
            return False
        return True

    def _check(
        self, manifest: dict[str, Any] | None, split: WorkerSplit | None = None
    ) -> tuple[ShardCut, Plan, dict[int, ShardRecord], list[int]]:
        """The shard cut (a resumed run keeps the first run's, or its shards would not line
        up), the plan, the usable shards among those checked (``split``'s share, default all)
        and the checked shards still to write."""
        cut = ShardCut.of(manifest) if manifest is not None else self.shard_cut
        plan = self.plan(cut)
        items = list(split.items(len(plan.shards))) if split else list(range(len(plan.shards)))
        checked = items if split else None  # None: every shard, strays removed
        records = _usable_shards(
            self.folder, manifest, plan.shards, self.layout, self.verify, checked
        )
        return cut, plan, records, [i for i in items if i not in records]

    def _write(self, plan: Plan, records: dict[int, ShardRecord], todo: Sequence[int]) -> None:
        """Write the shards ``todo`` (each with its record), after checking the disk has room
        for them; a per-token cache first says how much it will write."""
        bar = Progress(plan.rows(todo), len(self.key.hooks), self.progress)
        needed = cache_bytes(
            plan.rows(todo),
            plan.tokens(todo),
            self.model.d_model,
            len(self.key.hooks),
            self.capture.dtype.itemsize,
            self.key.per_token,
        )
        free = check_free_space(self.folder, needed)
        if self.key.per_token and todo:
            bar.note(
                f"per-token cache: {plan.tokens(todo)} tokens x {len(self.key.hooks)} hook(s) x "
                f"{self.model.d_model} values in {self.key.dtype}: about "
                f"{format_bytes(needed)} to write into {self.folder} ({format_bytes(free)} free)"
            )
        for i in todo:
            rows = plan.shards[i]
            tensors = self.capture.shard(rows, {r: self.encode(r) for r in rows}, bar)
            records[i] = write_shard(self.folder, i, tensors, self.key.digest())
        bar.close()

    def _complete(self, cut: ShardCut, records: dict[int, ShardRecord]) -> dict[str, Any]:
        manifest = self.manifest(cut, records, "complete")
        for path in self.folder.glob("shard-*.json"):
            path.unlink(missing_ok=True)
        return manifest

    def run(self) -> ActivationSet:
        """The whole job in one process (holding the folder's lock): keep each shard that
        passes its checks, write the others, then mark the manifest complete."""
        manifest = _resume_manifest(self.folder, self.key)
        if manifest is not None and manifest.get("status") == "complete":
            try:
                return load_complete(self.folder, manifest, self.key, self.verify, caching=True)
            except Damage as err:
                _repair(f"{err}; rebuilding what is damaged")
        cut, plan, records, todo = self._check(manifest)
        self.manifest(cut, records, "incomplete")
        self._write(plan, records, todo)
        manifest = self._complete(cut, records)
        # every shard was just written or checked whole: reads check what they read
        verify = Verify.OFF if self.verify is Verify.OFF else Verify.READ
        return load_complete(self.folder, manifest, self.key, verify, caching=True)

    def _claim(self) -> dict[str, Any] | None:
        """The manifest the workers share (the caller holds the plan lock): the first worker
        to arrive writes it, incomplete and with its shard size, so every worker plans the
        same shards; a complete cache whose shards all pass returns None (nothing to do)."""
        manifest = _resume_manifest(self.folder, self.key, orphans=False)
        if manifest is None:
            return self.manifest(self.shard_cut, {}, "incomplete")
        if manifest.get("status") == "complete":
            if self._verified(manifest):
                return None
            manifest = {**manifest, "status": "incomplete"}
            write_json_atomic(self.folder / MANIFEST, manifest)
        return manifest

    def write_share(self, split: WorkerSplit) -> ShareReport:
        """Write the missing shards of ``split``'s share (shards ``rank, rank + world_size,
        ...``), beside workers writing theirs (the caller holds the folder's lock shared)."""
        started = time.perf_counter()
        with folder_lock(self.folder, name=PLAN_LOCK_NAME):
            manifest = self._claim()
        if manifest is None:
            return ShareReport(self.folder, 0, 0, 0, time.perf_counter() - started)
        _, plan, records, todo = self._check(manifest, split)
        self._write(plan, records, todo)
        n = len(plan.shards)
        return ShareReport(
            self.folder, n, len(split.items(n)), len(todo), time.perf_counter() - started
        )

    def finalize(self) -> int:
        """Check every shard and mark the manifest complete (the caller holds the folder's
        lock alone); returns the number of shards. A complete cache is left as it is; a
        missing or damaged shard (reported) raises :class:`CacheIncompleteError`."""
        manifest = _resume_manifest(self.folder, self.key)
        if manifest is None:
            raise CacheIncompleteError(
                f"{self.folder} holds no shard of this cache yet: run the caching workers "
                "first (the same command without --finalize), then finalize with the same "
                "options (--dtype included: auto is bfloat16 on a GPU but float32 on the CPU, "
                "and the model's dtype is part of the cache's key)"
            )
        if self._verified(manifest):
            return len(manifest["shards"])
        cut, plan, records, todo = self._check(manifest)
        if todo:
            self.manifest(cut, records, "incomplete")
            names = [shard_name(i) for i in todo]
            raise CacheIncompleteError(
                f"{self.folder}: {len(todo)} of {len(plan.shards)} shards are missing or were "
                f"damaged ({', '.join(names[:4])}{', ...' if len(names) > 4 else ''}): run the "
                "caching workers again with the same options (each writes only what is "
                "missing of its share), then finalize"
            )
        self._complete(cut, records)
        return len(plan.shards)


def _reuse(folder: Path, key: CacheKey, verify: Verify) -> ActivationSet | None:
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
        return load_complete(folder, manifest, key, verify, caching=True)
    except Damage:
        return None


def make_job(
    model: LoadedModel,
    transcripts: Sequence[Transcript],
    hooks: Sequence[str],
    request: CacheRequest | None = None,
) -> CacheJob:
    """The :class:`CacheJob` of caching ``hooks`` of ``transcripts`` through ``model`` as
    ``request`` says (the defaults of :class:`CacheRequest` when None), checked before any
    work: its key, and so its folder, and how batches are cut."""
    request = request or CacheRequest()
    tokens, hooks = _check_request(transcripts, hooks, request.tokens)
    stop = stop_layer(hooks, model.n_layers)
    store_dtype = str(request.dtype)  # a name: CacheRequest reads a torch.dtype as its name
    key = CacheKey(
        model_name=model.name,
        model_fingerprint=model.fingerprint,
        dataset_hash=dataset_hash(transcripts),
        n_transcripts=len(transcripts),
        hooks=hooks,
        tokens=tokens,
        max_tokens=request.max_tokens,
        per_token=request.per_token,
        dtype=store_dtype,
        model_dtype=str(model.dtype).removeprefix("torch."),
        model_blocks=model.n_layers,
    )
    folder = (Path(request.cache_dir or cache_root() / "activations")) / key.digest()
    budget = Budget(request.batch_size, request.batch_tokens)
    capture = Capture(model, hooks, stop, budget, request.per_token, getattr(torch, store_dtype))
    return CacheJob(
        model,
        transcripts,
        key,
        folder,
        capture,
        ShardCut(request.shard_size, request.shard_tokens),
        verify_mode(request.verify),
        request.progress,
    )


def cache_activations(
    model: LoadedModel,
    transcripts: Sequence[Transcript],
    hooks: Sequence[str],
    tokens: TokenSelection | None = None,
    *,
    request: CacheRequest | None = None,
    **options: Any,
) -> ActivationSet:
    """Cache pooled (and optionally per-token) activations of ``hooks`` for ``transcripts``.

    ``hooks`` is required and names residual hooks (:func:`interp.hooks.hook_name`); only
    those are captured and the pass stops after the deepest one. Returns the cached set,
    reusing an existing complete cache of the same inputs without running the model.

    How to cache is one :class:`CacheRequest` (``request=``; its defaults when None);
    ``tokens`` and keyword ``options`` (its fields: ``batch_size``, ``per_token``,
    ``cache_dir``, ``progress``, ...) replace the request's, so
    ``cache_activations(model, data, hooks, tokens="reply", progress=False)`` needs no
    request. An unknown option is a ``TypeError``.

    A forward pass holds at most ``batch_size`` transcripts and, with ``batch_tokens``, at
    most that many padded tokens; after an out-of-memory error both are halved and the run
    goes on (:mod:`interp.cache.budget`). Neither changes which transcripts a shard holds.
    A shard holds ``shard_size`` transcripts, or fewer when ``shard_tokens`` caps its selected
    tokens (a per-token shard is held in memory until it is written).

    What the folder already holds is checked first (see :func:`load_activation_set`): by
    default every shard written, copied or replaced since the cache wrote or last checked it
    is checked whole, and the others by their headers (their vectors are checked as they are
    read); ``verify=True`` (``INTERP_CACHE_VERIFY=1``) checks every shard whole, ``verify=False``
    (``INTERP_CACHE_VERIFY=0``) compares no checksum (:class:`~interp.cache.key.Verify`). A
    damaged file is reported (:class:`CacheRepairWarning`, naming it) and written again. One
    process at a time writes a folder (:func:`interp.locks.folder_lock`); another waits, then
    reuses it. To split the work over processes, see :mod:`interp.cache.parallel`.
    """
    if tokens is not None:
        options["tokens"] = tokens
    job = make_job(model, transcripts, hooks, replace(request or CacheRequest(), **options))
    with folder_lock(job.folder, shared=True):
        reused = _reuse(job.folder, job.key, job.verify)
    if reused is not None and not find_orphans(job.folder):
        return reused
    with folder_lock(job.folder):
        return job.run()
