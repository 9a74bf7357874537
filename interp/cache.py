"""The on-disk activation cache.

``cache_activations(model, transcripts, hooks, tokens)`` runs only the requested hooks, stops
the forward pass after the deepest requested block, batches transcripts of similar length
with left padding, pools each transcript's selected tokens (mean) and streams shards of
``shard_size`` transcripts to disk as safetensors. A JSON manifest records what made the
cache (model fingerprint, dataset hash, hooks, token selection, dtype, library versions).

The cache folder is named by a hash of those inputs, so the same call reuses it without a
forward pass, a different model or dataset never lands in it, and a folder whose manifest
disagrees with the request is refused. Shards are written atomically and the order of
transcripts in shards is deterministic, so an interrupted run resumes at its first missing
shard. Memory holds one shard of pooled vectors at a time, whatever the dataset's size.

Nothing is read that was not written. The manifest (version :data:`MANIFEST_VERSION`) records
each shard's size, BLAKE2b checksum and rows (:class:`ShardRecord`); while a run is under way
each new shard's record waits beside it (``shard-00003.json``) and the manifest gathers them
when it is marked complete. Every read checks each shard's size, safetensors header, tensor
shapes and rows, and that the shards hold every row exactly once; ``verify=True`` (or
``INTERP_CACHE_VERIFY=1``) compares the checksums as well. Reading a damaged cache raises
:class:`CacheIntegrityError` naming the file; caching reports it (:class:`CacheRepairWarning`)
and writes it again, as it does a shard without a record (a cut write), a shard planned with
another shard size, and leftovers of cut writes (``.*.tmp``, ``*.partial``). A writer holds
the folder's lock (:mod:`interp.locks`), so a second process waits and then reuses the cache.
A folder of an older manifest version is rebuilt, with a message.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import einops
import torch
from jaxtyping import Float
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as safetensors_load
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_save
from torch import Tensor
from tqdm.auto import tqdm

from interp.artifacts import (
    blake2b_hex,
    check_same,
    file_blake2b,
    find_orphans,
    library_versions,
    remove_orphans,
    write_bytes_atomic,
    write_json_atomic,
)
from interp.data.padding import pad_left
from interp.data.tokens import EncodedTranscript, TokenSelection, check_tokens, encode_transcript
from interp.data.transcripts import Transcript, dataset_hash
from interp.hooks import parse_hook_name, stop_layer
from interp.locks import folder_lock
from interp.models import LoadedModel
from interp.paths import cache_root

FORMAT_VERSION = 1  # part of the key (so of the folder name): changes what is computed
#: Version of the manifest's layout; a folder of another version is rebuilt when caching.
MANIFEST_VERSION = 2
MANIFEST = "manifest.json"
#: Set to 1 to compare every shard's checksum on each read (as ``verify=True`` does).
VERIFY_ENV = "INTERP_CACHE_VERIFY"
_READ_FIX = "run cache_activations with the same inputs to rebuild it, or delete the folder"


class CacheMismatchError(ValueError):
    """A cache folder that belongs to another model, dataset, hook set or token selection."""


class CacheIntegrityError(CacheMismatchError):
    """A cache file that is not what the cache wrote: missing, truncated, altered, holding
    other rows, or a manifest that cannot be read. The message names the file and the fix."""


class CacheRepairWarning(UserWarning):
    """A damaged or stray file found in a cache folder while caching; it is written again
    (or removed). The message names the file and what was wrong with it."""


@dataclass(frozen=True)
class CacheKey:
    """Everything that determines the cached numbers; its hash names the folder."""

    model_name: str
    model_fingerprint: str
    dataset_hash: str
    n_transcripts: int
    hooks: tuple[str, ...]
    tokens: str
    max_tokens: int
    per_token: bool
    dtype: str
    format_version: int = FORMAT_VERSION

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> CacheKey:
        return cls(**{**raw, "hooks": tuple(raw["hooks"])})

    def digest(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.blake2b(blob, digest_size=8).hexdigest()


@dataclass
class ActivationSet:
    """Pooled activations of a dataset, in dataset order, read from a cache folder.

    ``pooled[hook]`` is ``[n_transcripts, d_model]`` (float32). ``n_selected`` counts the
    tokens pooled per transcript; ``answer_found`` is False where a reply had no ``Answer:``
    marker (and was read whole); ``truncated`` where the text was cut to ``max_tokens``.
    """

    path: Path
    key: CacheKey
    ids: list[str]
    pooled: dict[str, Float[Tensor, "n d_model"]]
    n_selected: Tensor
    answer_found: Tensor
    truncated: Tensor
    shards: tuple[str, ...] = ()  # the shard files, in the manifest's order

    @property
    def model_fingerprint(self) -> str:
        return self.key.model_fingerprint

    @property
    def tokens(self) -> str:
        return self.key.tokens

    @property
    def hooks(self) -> tuple[str, ...]:
        return self.key.hooks

    def __getitem__(self, hook: str) -> Float[Tensor, "n d_model"]:
        if hook not in self.pooled:
            raise KeyError(f"hook {hook!r} is not in this cache; it holds {list(self.pooled)}")
        return self.pooled[hook]

    def per_token(self, hook: str) -> list[Float[Tensor, "_tokens d_model"]]:  # per transcript
        """Per-token activations of each transcript's selected tokens (needs ``per_token``)."""
        if not self.key.per_token:
            raise ValueError(
                "this cache holds pooled activations only; rebuild with per_token=True"
            )
        out: list[Tensor] = [torch.empty(0)] * len(self.ids)
        for name in self.shards:
            data = load_file(self.path / name)
            offsets = data["token_offsets"]
            for j, i in enumerate(data["index"].tolist()):
                out[i] = data[f"tokens.{hook}"][offsets[j] : offsets[j + 1]].float()
        return out


def _shard_files(path: Path) -> list[Path]:
    return sorted(path.glob("shard-*.safetensors"))


def _shard_name(i: int) -> str:
    return f"shard-{i:05d}.safetensors"


def _record_path(folder: Path, name: str) -> Path:
    """Where a shard's record waits until the manifest lists it (``shard-00003.json``)."""
    return folder / name.replace(".safetensors", ".json")


def _full_check(verify: bool | None) -> bool:
    """Whether to compare every shard's checksum: ``verify``, else ``$INTERP_CACHE_VERIFY``."""
    if verify is not None:
        return verify
    return os.environ.get(VERIFY_ENV, "").strip().lower() not in ("", "0", "false", "no")


class _Damage(Exception):
    """A cache file that is not what the cache wrote (the message names it and what is wrong).
    Reading turns it into :class:`CacheIntegrityError`; caching reports it and rebuilds."""


@dataclass(frozen=True)
class ShardRecord:
    """What the manifest records of one shard file: its name, size in bytes, BLAKE2b checksum
    (:func:`interp.artifacts.blake2b_hex`) and the dataset rows it holds, in its order."""

    name: str
    size: int
    blake2b: str
    rows: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "rows": list(self.rows)}

    @classmethod
    def from_json(cls, raw: Any, where: Path) -> ShardRecord:
        try:
            record = cls(
                name=str(raw["name"]),
                size=int(raw["size"]),
                blake2b=str(raw["blake2b"]),
                rows=tuple(int(r) for r in raw["rows"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise _Damage(f"{where}: a shard record is malformed ({err!r}): {raw!r:.200}") from None
        return record


@dataclass(frozen=True)
class _Layout:
    """The tensors a shard of a cache must hold, with their shapes (``-1``: any length)."""

    hooks: tuple[str, ...]
    d_model: int
    per_token: bool

    def shapes(self, m: int) -> dict[str, tuple[int, ...]]:
        expected = {f"pooled.{h}": (m, self.d_model) for h in self.hooks}
        expected.update({k: (m,) for k in ("index", "n_selected", "answer_found", "truncated")})
        if self.per_token:
            expected["token_offsets"] = (m + 1,)
            expected.update({f"tokens.{h}": (-1, self.d_model) for h in self.hooks})
        return expected

    def check(
        self,
        path: Path,
        shapes: dict[str, tuple[int, ...]],
        index: list[int],
        rows: tuple[int, ...],
    ) -> None:
        """Refuse a shard whose tensors, shapes or rows are not the ones its record plans."""
        expected = self.shapes(len(rows))
        if set(shapes) != set(expected):
            raise _Damage(f"{path} holds tensors {sorted(shapes)}, expected {sorted(expected)}")
        for name, want in expected.items():
            got = shapes[name]
            if len(got) != len(want) or any(
                w not in (-1, g) for g, w in zip(got, want, strict=True)
            ):
                raise _Damage(f"{path}: tensor {name} has shape {list(got)}, expected {list(want)}")
        if tuple(index) != rows:
            raise _Damage(
                f"{path} holds rows {_few(index)}, but the manifest records rows {_few(rows)} for "
                "it (a shard of another run or shard size)"
            )


def _few(rows: Sequence[int], n: int = 6) -> str:
    shown = ", ".join(str(r) for r in rows[:n])
    return f"[{shown}{', ...' if len(rows) > n else ''}] ({len(rows)} rows)"


def _check_size(path: Path, record: ShardRecord) -> None:
    if not path.is_file():
        raise _Damage(f"{path} is missing (the manifest lists it)")
    size = path.stat().st_size
    if size != record.size:
        raise _Damage(
            f"{path} is {size} bytes, the manifest records {record.size} (truncated or overwritten)"
        )


def _check_digest(path: Path, record: ShardRecord, digest: str) -> None:
    if digest != record.blake2b:
        raise _Damage(
            f"{path}: BLAKE2b checksum {digest[:16]}... differs from the manifest's "
            f"{record.blake2b[:16]}... (the file was altered after it was written)"
        )


def _verify_shard(path: Path, record: ShardRecord, layout: _Layout, full: bool) -> None:
    """Check a shard without loading its vectors: size, safetensors header, tensor shapes and
    rows against ``record``; with ``full``, its checksum too."""
    _check_size(path, record)
    if full:
        _check_digest(path, record, file_blake2b(path))
    try:
        with safe_open(path, "pt") as handle:
            shapes = {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}  # noqa: SIM118
            index = handle.get_tensor("index").tolist() if "index" in shapes else []
    except (SafetensorError, OSError) as err:
        raise _Damage(f"{path} is not a readable safetensors file ({err})") from None
    layout.check(path, shapes, index, record.rows)


def _read_shard(path: Path, record: ShardRecord, layout: _Layout, full: bool) -> dict[str, Tensor]:
    """The tensors of a shard, checked as :func:`_verify_shard` checks it."""
    _check_size(path, record)
    try:
        if full:
            blob = path.read_bytes()
            _check_digest(path, record, blake2b_hex(blob))
            tensors = safetensors_load(blob)
        else:
            tensors = load_file(path)
    except SafetensorError as err:
        raise _Damage(f"{path} is not a readable safetensors file ({err})") from None
    index = tensors["index"].tolist() if "index" in tensors else []
    layout.check(path, {k: tuple(v.shape) for k, v in tensors.items()}, index, record.rows)
    return tensors


def _read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of ``folder``, refusing (:class:`_Damage`, naming the file) one that is
    empty, not JSON, without a valid ``key``, or of another manifest version."""
    path = folder / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not an activation cache (no {MANIFEST})")
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise _Damage(f"{path} is empty (its write was cut)")
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as err:
        raise _Damage(f"{path} is not valid JSON ({err})") from None
    if not isinstance(manifest, dict) or "key" not in manifest:
        raise _Damage(f"{path} has no 'key' (it does not say what made the cache)")
    version = manifest.get("manifest_version", 1)
    if version != MANIFEST_VERSION:
        raise _Damage(
            f"{path} has manifest version {version}, written by an older interp without a "
            f"checksum per shard (this one reads version {MANIFEST_VERSION})"
        )
    try:
        CacheKey.from_json(manifest["key"])
    except (TypeError, KeyError, AttributeError) as err:
        raise _Damage(f"{path} has a malformed 'key' ({err})") from None
    return manifest


def _records(manifest: dict[str, Any], folder: Path) -> list[ShardRecord]:
    raw = manifest.get("shards", [])
    if not isinstance(raw, list):
        raise _Damage(f"{folder / MANIFEST}: 'shards' is not a list of shard records")
    return [ShardRecord.from_json(r, folder / MANIFEST) for r in raw]


def _check_coverage(records: Sequence[ShardRecord], n: int, where: Path) -> None:
    """Refuse shards that are not named in order or do not hold rows ``0..n-1`` exactly once."""
    names = [r.name for r in records]
    if names != [_shard_name(i) for i in range(len(records))]:
        raise _Damage(f"{where} lists shards {names[:4]}..., not shard-00000... in order")
    counts = Counter(row for r in records for row in r.rows)
    missing = [i for i in range(n) if i not in counts]
    repeated = sorted(i for i, c in counts.items() if c > 1 or not 0 <= i < n)
    if missing or repeated:
        raise _Damage(
            f"{where}: the shards do not hold rows 0..{n - 1} exactly once (missing rows "
            f"{_few(missing)}, repeated or out-of-range rows {_few(repeated)})"
        )


def _load_complete(
    folder: Path, manifest: dict[str, Any], key: CacheKey, full: bool
) -> ActivationSet:
    """Read a complete cache's shards, checking each (see :func:`load_activation_set`)."""
    n, d_model = key.n_transcripts, int(manifest["d_model"])
    records = _records(manifest, folder)
    _check_coverage(records, n, folder / MANIFEST)
    if len(manifest.get("ids", [])) != n:
        raise _Damage(f"{folder / MANIFEST} lists {len(manifest.get('ids', []))} ids, not {n}")
    layout = _Layout(key.hooks, d_model, key.per_token)
    pooled = {h: torch.empty(n, d_model) for h in key.hooks}
    stats = {
        k: torch.zeros(n, dtype=torch.long) for k in ("n_selected", "answer_found", "truncated")
    }
    for record in records:
        data = _read_shard(folder / record.name, record, layout, full)
        index = data["index"]
        for h in key.hooks:
            pooled[h][index] = data[f"pooled.{h}"].float()
        for k in stats:
            stats[k][index] = data[k].long()
    return ActivationSet(
        path=folder,
        key=key,
        ids=manifest["ids"],
        pooled=pooled,
        n_selected=stats["n_selected"],
        answer_found=stats["answer_found"].bool(),
        truncated=stats["truncated"].bool(),
        shards=tuple(r.name for r in records),
    )


def load_activation_set(
    path: str | Path, expect: CacheKey | None = None, *, verify: bool | None = None
) -> ActivationSet:
    """Read a complete cache folder; with ``expect``, refuse one made from other inputs.

    Every shard is checked before it is used: its size, safetensors header, tensor shapes and
    rows against the manifest, and that the shards hold each row exactly once. ``verify=True``
    (or ``INTERP_CACHE_VERIFY=1``) also compares each shard's BLAKE2b checksum, which reads
    every byte. A file that fails raises :class:`CacheIntegrityError` naming it.
    """
    folder = Path(path)
    try:
        manifest = _read_manifest(folder)
    except _Damage as err:
        raise CacheIntegrityError(f"{err}; {_READ_FIX}") from None
    key = CacheKey.from_json(manifest["key"])
    if expect is not None:
        _check_key(key, expect, folder)
    if manifest.get("status") != "complete":
        raise CacheMismatchError(
            f"{folder} is an incomplete cache; run cache_activations to finish it"
        )
    try:
        return _load_complete(folder, manifest, key, _full_check(verify))
    except _Damage as err:
        raise CacheIntegrityError(f"{err}; {_READ_FIX}") from None


def pad_batch(
    encoded: Sequence[EncodedTranscript], pad_id: int, device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """Left-pad a batch: returns ``input_ids``, ``attention_mask`` and the selection mask
    (1.0 on the tokens to pool), on ``device``."""
    ids, attention = pad_left([e.input_ids for e in encoded], pad_id)
    width = ids.shape[1]
    selection = torch.zeros(len(encoded), width)
    for row, e in enumerate(encoded):
        pad = width - len(e.input_ids)
        selection[row, [pad + p for p in e.selected]] = 1.0
    return ids.to(device), attention.to(device), selection.to(device)


def mean_pool(
    acts: Float[Tensor, "batch pos d_model"], selection: Float[Tensor, "batch pos"]
) -> Float[Tensor, "batch d_model"]:
    """Mean of the selected positions of each row."""
    total = einops.einsum(acts.float(), selection, "b p d, b p -> b d")
    return total / selection.sum(dim=1, keepdim=True)


def _check_key(found: CacheKey, wanted: CacheKey, folder: Path) -> None:
    """Refuse a cache folder whose manifest records other inputs than the request's."""
    check_same(
        asdict(found),
        asdict(wanted),
        where=folder,
        fix="delete the folder or point the cache elsewhere",
        error=CacheMismatchError,
    )


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
    _record_path(path.parent, path.name).unlink(missing_ok=True)


def _clear(folder: Path) -> None:
    """Remove every shard and shard record of ``folder`` (its manifest cannot be trusted)."""
    for path in [*_shard_files(folder), *folder.glob("shard-*.json")]:
        path.unlink(missing_ok=True)


def _resume_manifest(folder: Path, key: CacheKey) -> dict[str, Any] | None:
    """The manifest to resume from, or None for a new folder or one whose manifest cannot be
    trusted (reported; its shards are removed). A manifest of other inputs is refused."""
    for orphan in remove_orphans(folder):
        _repair(f"removed {orphan}, left by an interrupted write")
    try:
        manifest = _read_manifest(folder)
    except FileNotFoundError:
        return None
    except _Damage as err:
        _repair(f"{err}; rebuilding the cache in {folder}")
        _clear(folder)
        return None
    _check_key(CacheKey.from_json(manifest["key"]), key, folder)
    return manifest


def _known_records(folder: Path, manifest: dict[str, Any] | None) -> dict[str, ShardRecord]:
    """Shard records by name: the manifest's, then each pending record file written beside a
    shard since (a malformed one is reported and removed)."""
    known: dict[str, ShardRecord] = {}
    if manifest is not None:
        try:
            known = {r.name: r for r in _records(manifest, folder)}
        except _Damage as err:
            _repair(f"{err}; rebuilding its shards")
    for path in sorted(folder.glob("shard-*.json")):
        try:
            record = ShardRecord.from_json(json.loads(path.read_text(encoding="utf-8")), path)
        except (json.JSONDecodeError, UnicodeDecodeError, _Damage) as err:
            _repair(f"{path} is not a valid shard record ({err}); rebuilding its shard")
            path.unlink(missing_ok=True)
            continue
        known[record.name] = record
    return known


def _usable_shards(
    folder: Path,
    manifest: dict[str, Any] | None,
    plan: Sequence[tuple[int, ...]],
    layout: _Layout,
    full: bool,
) -> dict[int, ShardRecord]:
    """The shards already in ``folder`` that a resumed run keeps: each has a record, holds the
    rows the plan gives it and passes :func:`_verify_shard`. Any other shard file is reported
    and removed, so it is written again."""
    known = _known_records(folder, manifest)
    usable: dict[int, ShardRecord] = {}
    for i, rows in enumerate(plan):
        path = folder / _shard_name(i)
        record = known.pop(path.name, None)
        if record is None:
            if path.exists():
                _repair(f"{path} has no checksum record (its write was cut); rebuilding it")
                _discard(path)
            continue
        try:
            if record.rows != rows:
                raise _Damage(
                    f"{path} was planned for rows {_few(record.rows)}, this run plans rows "
                    f"{_few(rows)} for it (another shard size)"
                )
            _verify_shard(path, record, layout, full)
        except _Damage as err:
            _repair(f"{err}; rebuilding it")
            _discard(path)
            continue
        usable[i] = record
    planned = {_shard_name(i) for i in range(len(plan))}
    for path in _shard_files(folder):
        if path.name not in planned:
            _repair(f"{path} is not part of this cache's shard plan; removed it")
            _discard(path)
    return usable


class _Progress:
    """The progress bar of a caching run, showing the forward passes' token throughput."""

    def __init__(self, total: int, n_hooks: int, enabled: bool) -> None:
        self.bar = tqdm(
            total=total,
            desc=f"caching {n_hooks} hook(s)",
            unit="transcript",
            disable=not enabled,
            mininterval=1.0,
        )
        self.started, self.n_tokens = time.perf_counter(), 0

    def update(self, n_transcripts: int, n_tokens: int) -> None:
        self.n_tokens += n_tokens
        self.bar.update(n_transcripts)
        rate = self.n_tokens / (time.perf_counter() - self.started)
        self.bar.set_postfix(tok_per_s=f"{rate:.0f}", refresh=False)

    def close(self) -> None:
        self.bar.close()


def _shard_tensors(
    members: Sequence[int],
    encoded: dict[int, EncodedTranscript],
    pooled: dict[str, list[Tensor]],
    per_tok: dict[str, list[Tensor]] | None,
) -> dict[str, Tensor]:
    """The contents of one shard file: pooled vectors per hook, the dataset rows they belong
    to (``index``), per-row token statistics and, when per-token vectors were kept, those
    vectors concatenated with each row's start offset."""
    tensors = {f"pooled.{h}": torch.cat(rows) for h, rows in pooled.items()}
    tensors["index"] = torch.tensor(members, dtype=torch.long)
    tensors["n_selected"] = torch.tensor([len(encoded[i].selected) for i in members])
    tensors["answer_found"] = torch.tensor([int(encoded[i].answer_found) for i in members])
    tensors["truncated"] = torch.tensor([int(encoded[i].truncated) for i in members])
    if per_tok is not None:
        counts = torch.tensor([len(encoded[i].selected) for i in members])
        tensors["token_offsets"] = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
        for h, rows in per_tok.items():
            tensors[f"tokens.{h}"] = torch.cat(rows)
    return tensors


@dataclass(frozen=True)
class _Capture:
    """What a caching run reads from each batch: ``hooks`` only (the pass stops at block
    ``stop``), pooled means and, with ``per_token``, each row's selected token vectors, stored
    in ``dtype``."""

    model: LoadedModel
    hooks: tuple[str, ...]
    stop: int | None
    batch_size: int
    per_token: bool
    dtype: torch.dtype

    def shard(
        self,
        members: Sequence[int],
        encoded: dict[int, EncodedTranscript],
        progress: _Progress,
    ) -> dict[str, Tensor]:
        """Run the transcripts ``members`` of one shard batch by batch; returns the shard's
        tensors (see :func:`_shard_tensors`)."""
        pooled: dict[str, list[Tensor]] = {h: [] for h in self.hooks}
        per_tok: dict[str, list[Tensor]] = {h: [] for h in self.hooks}
        pad_id = self.model.tokenizer.pad_token_id
        for start in range(0, len(members), self.batch_size):
            batch = members[start : start + self.batch_size]
            ids, attention, selection = pad_batch(
                [encoded[i] for i in batch], pad_id, self.model.device
            )
            with torch.inference_mode():
                _, acts = self.model.bridge.run_with_cache(
                    ids,
                    attention_mask=attention,
                    names_filter=list(self.hooks),
                    stop_at_layer=self.stop,
                )
            for h in self.hooks:
                pooled[h].append(mean_pool(acts[h], selection).to("cpu", self.dtype))
                if self.per_token:
                    mask = selection.bool()
                    per_tok[h].extend(
                        acts[h][r][mask[r]].to("cpu", self.dtype) for r in range(len(batch))
                    )
            del acts
            progress.update(len(batch), int(attention.sum()))
        return _shard_tensors(members, encoded, pooled, per_tok if self.per_token else None)


def _write_shard(folder: Path, i: int, tensors: dict[str, Tensor]) -> ShardRecord:
    """Write shard ``i`` atomically, then its record (size, checksum, rows) beside it."""
    blob = safetensors_save(tensors)
    record = ShardRecord(
        name=_shard_name(i),
        size=len(blob),
        blake2b=blake2b_hex(blob),
        rows=tuple(tensors["index"].tolist()),
    )
    write_bytes_atomic(folder / record.name, blob)
    write_json_atomic(_record_path(folder, record.name), record.to_json())
    return record


@dataclass(frozen=True)
class _Job:
    """One caching call: what to run on which transcripts, where, and how to check what the
    folder already holds (``full``: compare checksums too)."""

    model: LoadedModel
    transcripts: Sequence[Transcript]
    key: CacheKey
    folder: Path
    capture: _Capture
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
                return _load_complete(self.folder, manifest, self.key, self.full)
            except _Damage as err:
                _repair(f"{err}; rebuilding what is damaged")
        # A resumed run keeps the first run's shard plan, or its shards would not line up.
        shard_size = int(manifest["shard_size"]) if manifest is not None else self.shard_size
        plan = self.plan(shard_size)
        layout = _Layout(self.key.hooks, self.model.d_model, self.key.per_token)
        records = _usable_shards(self.folder, manifest, plan, layout, self.full)
        self.manifest(shard_size, records, "incomplete")
        todo = [(i, rows) for i, rows in enumerate(plan) if i not in records]
        bar = _Progress(sum(len(rows) for _, rows in todo), len(self.key.hooks), self.progress)
        for i, rows in todo:
            tensors = self.capture.shard(rows, {r: self.encode(r) for r in rows}, bar)
            records[i] = _write_shard(self.folder, i, tensors)
        bar.close()
        self.manifest(shard_size, records, "complete")
        for path in self.folder.glob("shard-*.json"):
            path.unlink(missing_ok=True)
        return load_activation_set(self.folder, expect=self.key, verify=False)


def _reuse(folder: Path, key: CacheKey, full: bool) -> ActivationSet | None:
    """The complete cache in ``folder`` if every check passes, else None (the writing pass
    then reports what is wrong and rebuilds it). A manifest of other inputs is refused."""
    try:
        manifest = _read_manifest(folder)
    except (FileNotFoundError, _Damage):
        return None
    _check_key(CacheKey.from_json(manifest["key"]), key, folder)
    if manifest.get("status") != "complete":
        return None
    try:
        return _load_complete(folder, manifest, key, full)
    except _Damage:
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
    full = _full_check(verify)
    with folder_lock(folder, shared=True):
        reused = _reuse(folder, key, full)
    if reused is not None and not find_orphans(folder):
        return reused
    capture = _Capture(model, hooks, stop, batch_size, per_token, dtype)
    job = _Job(model, transcripts, key, folder, capture, shard_size, full, progress)
    with folder_lock(folder):
        return job.run()
