"""Reading a complete cache: :class:`ActivationSet` and :func:`load_activation_set`.

Opening a cache reads its manifest, checks every shard without loading its vectors (size,
safetensors header and its checksum, tensor dtypes and shapes, rows; every byte's checksum
with ``verify=True``) and reads the small per-transcript statistics. The vectors stay on disk
until they are asked for, so opening costs the same whatever the cache's size and a cache
larger than memory can be read in parts:

- ``acts[hook]`` reads one hook's ``[n, d_model]`` matrix in dataset order (kept for later
  calls; :meth:`ActivationSet.release` drops it);
- :meth:`ActivationSet.blocks` streams one hook shard by shard, each block with the dataset
  rows it holds, optionally only some rows (a training split, a fold);
- :meth:`ActivationSet.map_rows` applies a function block by block (a probe's score, a
  projection) and returns its results in the order of the rows asked for;
- :meth:`ActivationSet.nbytes` says how large a read would be, so a caller can choose.

Shards are read through safetensors' memory map, one tensor at a time, so reading one hook of
a cache of many hooks touches only that hook's bytes; those bytes are checked against the
tensor's checksum in the manifest as they are read (unless ``verify=False``), so every number
handed out is one the cache wrote, at no extra I/O. Each read first checks that the shard is
the file that was checked on opening (same size, times and inode) and refuses one that another
process replaced since.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.cache.key import (
    MANIFEST,
    READ_FIX,
    CacheIntegrityError,
    CacheKey,
    CacheMismatchError,
    Verify,
    check_key,
    verify_mode,
)
from interp.cache.shards import (
    Damage,
    Layout,
    ShardRecord,
    Stamp,
    check_coverage,
    check_shard,
    file_stamp,
    read_manifest,
    read_records,
    read_tensors,
)

#: The per-transcript statistics every shard holds beside its vectors.
_STATS = ("n_selected", "answer_found", "truncated")

#: Bytes per value of a hook's vectors once read (float32, whatever the cache's dtype).
_READ_BYTES = 4


@dataclass(frozen=True)
class CheckedShard:
    """A shard that passed its checks on opening: its file, the dataset rows it holds (in
    its order), the file's :func:`~interp.cache.shards.file_stamp` when it was checked and,
    unless checksums are off, its record, whose checksums each read is compared with."""

    path: Path
    rows: Int[Tensor, " m"]
    stamp: Stamp
    record: ShardRecord | None = field(default=None, repr=False)

    def read(self, name: str) -> Tensor:
        """Tensor ``name`` of the shard (memory-mapped), after checking the file is unchanged,
        its bytes checked against the tensor's checksum."""
        try:
            unchanged = file_stamp(self.path) == self.stamp
        except OSError:
            unchanged = False
        if not unchanged:
            raise CacheIntegrityError(
                f"{self.path} was removed or rewritten since the cache was opened and checked "
                "(its size, times or inode differ); open the cache again with "
                "load_activation_set"
            )
        try:
            return read_tensors(self.path, [name], self.record)[name]
        except Damage as err:
            raise CacheIntegrityError(f"{err}; {READ_FIX}") from None


@dataclass
class ActivationSet:
    """Pooled activations of a dataset, read from a cache folder on demand (see the module).

    ``acts[hook]`` is ``[n_transcripts, d_model]`` float32 in dataset order. ``n_selected``
    counts the tokens pooled per transcript; ``answer_found`` is False where a reply had no
    ``Answer:`` marker (and was read whole); ``truncated`` where the text was cut to
    ``max_tokens``. ``checked`` holds the shards in the manifest's order.
    """

    path: Path
    key: CacheKey
    ids: list[str]
    d_model: int
    n_selected: Tensor
    answer_found: Tensor
    truncated: Tensor
    checked: tuple[CheckedShard, ...] = field(default=(), repr=False)
    _loaded: dict[str, Tensor] = field(default_factory=dict, repr=False)

    @property
    def model_fingerprint(self) -> str:
        return self.key.model_fingerprint

    @property
    def tokens(self) -> str:
        return self.key.tokens

    @property
    def hooks(self) -> tuple[str, ...]:
        return self.key.hooks

    @property
    def shards(self) -> tuple[str, ...]:
        """The shard file names, in the manifest's order."""
        return tuple(s.path.name for s in self.checked)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, hook: str) -> Float[Tensor, "n d_model"]:
        self._check_hook(hook)
        if hook not in self._loaded:
            self._loaded[hook] = self.read(hook)
        return self._loaded[hook]

    def release(self, hook: str | None = None) -> None:
        """Forget the matrix ``acts[hook]`` keeps (every hook's with ``None``)."""
        if hook is None:
            self._loaded.clear()
        else:
            self._loaded.pop(hook, None)

    def nbytes(self, hook: str, rows: Tensor | None = None) -> int:
        """Bytes of the float32 matrix that reading ``rows`` (all with ``None``) of ``hook``
        makes: what holding them in memory costs."""
        self._check_hook(hook)
        n = len(self.ids) if rows is None else len(rows)
        return n * self.d_model * _READ_BYTES

    def blocks(
        self, hook: str, rows: Tensor | None = None
    ) -> Iterator[tuple[Int[Tensor, " m"], Float[Tensor, "m d_model"]]]:
        """``(dataset_rows, vectors)`` of ``hook``, one block per shard, in shard order.

        With ``rows`` (dataset row indices), each block keeps only those rows and shards
        holding none are not read; every requested row comes exactly once. Memory holds one
        block at a time.
        """
        self._check_hook(hook)
        keep = None if rows is None else self._membership(rows)
        for shard in self.checked:
            index = shard.rows
            selected = None if keep is None else keep[index]
            if selected is not None and not bool(selected.any()):
                continue
            X = shard.read(f"pooled.{hook}")
            if selected is not None and not bool(selected.all()):
                X, index = X[selected], index[selected]
            yield index, X.float()

    def map_rows(self, hook: str, rows: Tensor | None, fn: Callable[[Tensor], Tensor]) -> Tensor:
        """``fn`` applied to ``hook``'s vectors block by block, results stacked in the order of
        ``rows`` (dataset order with ``None``). ``fn`` maps ``[m, d_model]`` to ``[m, ...]``;
        memory holds one block plus the results. Repeated rows are read once."""
        wanted = torch.arange(len(self.ids)) if rows is None else self._as_rows(rows)
        unique, inverse = torch.unique(wanted, return_inverse=True)
        position = torch.full((len(self.ids),), -1, dtype=torch.long)
        position[unique] = torch.arange(len(unique))
        out: Tensor | None = None
        for index, X in self.blocks(hook, unique):
            result = fn(X)
            if out is None:
                out = result.new_empty((len(unique), *result.shape[1:]))
            out[position[index]] = result.to(out.device)
        if out is None:  # no rows asked for
            return fn(torch.empty(0, self.d_model))
        return out if rows is None else out[inverse]

    def read(self, hook: str, rows: Tensor | None = None) -> Float[Tensor, "m d_model"]:
        """The float32 vectors of ``rows`` (all, in dataset order, with ``None``) of ``hook``."""
        return self.map_rows(hook, rows, lambda X: X)

    def per_token(self, hook: str) -> list[Float[Tensor, "_tokens d_model"]]:  # per transcript
        """Per-token activations of each transcript's selected tokens (needs ``per_token``)."""
        if not self.key.per_token:
            raise ValueError(
                "this cache holds pooled activations only; rebuild with per_token=True"
            )
        self._check_hook(hook)
        out: list[Tensor] = [torch.empty(0)] * len(self.ids)
        for shard in self.checked:
            offsets = shard.read("token_offsets").tolist()
            tokens = shard.read(f"tokens.{hook}")
            for j, i in enumerate(shard.rows.tolist()):
                out[i] = tokens[offsets[j] : offsets[j + 1]].to(torch.float32, copy=True)
        return out

    def _check_hook(self, hook: str) -> None:
        if hook not in self.key.hooks:
            raise KeyError(f"hook {hook!r} is not in this cache; it holds {list(self.key.hooks)}")

    def _as_rows(self, rows: Tensor) -> Tensor:
        if rows.ndim != 1 or (len(rows) and rows.is_floating_point()) or rows.dtype == torch.bool:
            raise ValueError(
                f"rows must be a 1-D tensor of dataset row indices, got {rows.dtype} of shape "
                f"{tuple(rows.shape)}"
            )
        rows = rows.long().cpu()
        if len(rows) and not (int(rows.min()) >= 0 and int(rows.max()) < len(self.ids)):
            raise IndexError(
                f"rows must lie in 0..{len(self.ids) - 1} (the cache holds {len(self.ids)} "
                f"transcripts), got {int(rows.min())}..{int(rows.max())}"
            )
        return rows

    def _membership(self, rows: Tensor) -> Tensor:
        keep = torch.zeros(len(self.ids), dtype=torch.bool)
        keep[self._as_rows(rows)] = True
        return keep


def _check_shards(
    folder: Path,
    records: list[ShardRecord],
    layout: Layout,
    n: int,
    verify: Verify,
    caching: bool,
) -> tuple[list[CheckedShard], dict[str, Tensor]]:
    """Check every shard (:func:`~interp.cache.shards.check_shard`) and read its statistics;
    a file that changes while it is checked is refused. Caching (``caching``) checks whole
    each shard whose stamp differs from its record's."""
    shards = []
    stats = {k: torch.zeros(n, dtype=torch.long) for k in _STATS}
    digests = verify is not Verify.OFF
    for record in records:
        path = folder / record.name
        _, stamp = check_shard(path, record, layout, verify, caching)
        shard = CheckedShard(
            path, torch.tensor(record.rows, dtype=torch.long), stamp, record if digests else None
        )
        for k, value in read_tensors(path, _STATS, shard.record).items():
            stats[k][shard.rows] = value.long()
        if file_stamp(path) != stamp:
            raise Damage(f"{path} changed while it was being checked (another writer?)")
        shards.append(shard)
    return shards, stats


def load_complete(
    folder: Path, manifest: dict[str, Any], key: CacheKey, verify: Verify, caching: bool = False
) -> ActivationSet:
    """Open a complete cache, checking each shard (see :func:`load_activation_set`; with
    ``caching``, as :class:`~interp.cache.key.Verify` says caching does); its vectors are
    read when asked for."""
    n, d_model = key.n_transcripts, int(manifest["d_model"])
    records = read_records(manifest, folder)
    check_coverage(records, n, folder / MANIFEST)
    if len(manifest.get("ids", [])) != n:
        raise Damage(f"{folder / MANIFEST} lists {len(manifest.get('ids', []))} ids, not {n}")
    layout = Layout(key.hooks, d_model, key.per_token, key.digest(), key.dtype)
    shards, stats = _check_shards(folder, records, layout, n, verify, caching)
    return ActivationSet(
        path=folder,
        key=key,
        ids=manifest["ids"],
        d_model=d_model,
        n_selected=stats["n_selected"],
        answer_found=stats["answer_found"].bool(),
        truncated=stats["truncated"].bool(),
        checked=tuple(shards),
    )


def load_activation_set(
    path: str | Path, expect: CacheKey | None = None, *, verify: bool | None = None
) -> ActivationSet:
    """Open a complete cache folder; with ``expect``, refuse one made from other inputs.

    Every shard is checked before any vector is used: its size, safetensors header (and its
    checksum), tensor dtypes and shapes and rows against the manifest, and that the shards
    hold each row exactly once. The vectors themselves are read when asked for (see
    :class:`ActivationSet`), each tensor's bytes checked against its checksum as they are
    read. ``verify=True`` (or ``INTERP_CACHE_VERIFY=1``) checks every byte of every shard on
    opening; ``verify=False`` (or ``INTERP_CACHE_VERIFY=0``) compares no checksum
    (:class:`~interp.cache.key.Verify`). A file that fails raises
    :class:`CacheIntegrityError` naming it and the fix.
    """
    folder = Path(path)
    try:
        manifest = read_manifest(folder)
    except Damage as err:
        raise CacheIntegrityError(f"{err}; {READ_FIX}") from None
    key = CacheKey.from_json(manifest["key"])
    if expect is not None:
        check_key(key, expect, folder)
    if manifest.get("status") != "complete":
        raise CacheMismatchError(
            f"{folder} is an incomplete cache; run cache_activations to finish it"
        )
    try:
        return load_complete(folder, manifest, key, verify_mode(verify))
    except Damage as err:
        raise CacheIntegrityError(f"{err}; {READ_FIX}") from None
