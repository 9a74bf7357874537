"""Reading a complete cache: :class:`ActivationSet` and :func:`load_activation_set`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from safetensors.torch import load_file
from torch import Tensor

from interp.cache.key import (
    MANIFEST,
    READ_FIX,
    CacheIntegrityError,
    CacheKey,
    CacheMismatchError,
    check_key,
    full_check,
)
from interp.cache.shards import (
    Damage,
    Layout,
    check_coverage,
    read_manifest,
    read_records,
    read_shard,
)


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


def load_complete(
    folder: Path, manifest: dict[str, Any], key: CacheKey, full: bool
) -> ActivationSet:
    """Read a complete cache's shards, checking each (see :func:`load_activation_set`)."""
    n, d_model = key.n_transcripts, int(manifest["d_model"])
    records = read_records(manifest, folder)
    check_coverage(records, n, folder / MANIFEST)
    if len(manifest.get("ids", [])) != n:
        raise Damage(f"{folder / MANIFEST} lists {len(manifest.get('ids', []))} ids, not {n}")
    layout = Layout(key.hooks, d_model, key.per_token)
    pooled = {h: torch.empty(n, d_model) for h in key.hooks}
    stats = {
        k: torch.zeros(n, dtype=torch.long) for k in ("n_selected", "answer_found", "truncated")
    }
    for record in records:
        data = read_shard(folder / record.name, record, layout, full)
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
        return load_complete(folder, manifest, key, full_check(verify))
    except Damage as err:
        raise CacheIntegrityError(f"{err}; {READ_FIX}") from None
