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
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import einops
import torch
from jaxtyping import Float
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm

from interp.artifacts import atomic_write, check_same, library_versions, write_json_atomic
from interp.data.padding import pad_left
from interp.data.tokens import EncodedTranscript, TokenSelection, check_tokens, encode_transcript
from interp.data.transcripts import Transcript, dataset_hash
from interp.hooks import parse_hook_name, stop_layer
from interp.models import LoadedModel
from interp.paths import cache_root

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class CacheMismatchError(ValueError):
    """A cache folder that belongs to another model, dataset, hook set or token selection."""


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
        for shard in _shard_files(self.path):
            data = load_file(shard)
            offsets = data["token_offsets"]
            for j, i in enumerate(data["index"].tolist()):
                out[i] = data[f"tokens.{hook}"][offsets[j] : offsets[j + 1]].float()
        return out


def _shard_files(path: Path) -> list[Path]:
    return sorted(path.glob("shard-*.safetensors"))


def _shard_name(i: int) -> str:
    return f"shard-{i:05d}.safetensors"


def load_activation_set(path: str | Path, expect: CacheKey | None = None) -> ActivationSet:
    """Read a complete cache folder; with ``expect``, refuse one made from other inputs."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{path} is not an activation cache (no {MANIFEST})")
    manifest = json.loads(manifest_path.read_text())
    key = CacheKey.from_json(manifest["key"])
    if expect is not None:
        _check_key(key, expect, path)
    if manifest.get("status") != "complete":
        raise CacheMismatchError(
            f"{path} is an incomplete cache; run cache_activations to finish it"
        )
    n = key.n_transcripts
    pooled = {h: torch.empty(n, manifest["d_model"]) for h in key.hooks}
    stats = {
        k: torch.zeros(n, dtype=torch.long) for k in ("n_selected", "answer_found", "truncated")
    }
    seen = 0
    for shard in _shard_files(path):
        data = load_file(shard)
        index = data["index"]
        for h in key.hooks:
            pooled[h][index] = data[f"pooled.{h}"].float()
        for k in stats:
            stats[k][index] = data[k].long()
        seen += len(index)
    if seen != n:
        raise CacheMismatchError(f"{path}: shards hold {seen} transcripts, manifest says {n}")
    return ActivationSet(
        path=Path(path),
        key=key,
        ids=manifest["ids"],
        pooled=pooled,
        n_selected=stats["n_selected"],
        answer_found=stats["answer_found"].bool(),
        truncated=stats["truncated"].bool(),
    )


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


def _read_existing(folder: Path, key: CacheKey) -> tuple[ActivationSet | None, int | None]:
    """What ``folder`` already holds for ``key``: ``(complete set, None)``, ``(None, planned
    shard size)`` for an interrupted run (a resumed run keeps the first run's shards, or they
    would not line up), or ``(None, None)`` for a new folder. Other inputs are refused."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        return None, None
    manifest = json.loads(manifest_path.read_text())
    _check_key(CacheKey.from_json(manifest["key"]), key, folder)
    if manifest.get("status") == "complete":
        return load_activation_set(folder, expect=key), None
    return None, manifest["shard_size"]


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


def _mark_complete(folder: Path, n_shards: int) -> None:
    """Record in the manifest that every shard is written (only then is the cache read)."""
    manifest_path = folder / MANIFEST
    manifest: dict[str, Any] = json.loads(manifest_path.read_text())
    manifest.update(status="complete", shards=[_shard_name(i) for i in range(n_shards)])
    write_json_atomic(manifest_path, manifest)


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
) -> ActivationSet:
    """Cache pooled (and optionally per-token) activations of ``hooks`` for ``transcripts``.

    ``hooks`` is required and names residual hooks (:func:`interp.hooks.hook_name`); only
    those are captured and the pass stops after the deepest one. Returns the cached set,
    reusing an existing complete cache of the same inputs without running the model.
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
    complete, planned_shard_size = _read_existing(folder, key)
    if complete is not None:
        return complete
    if planned_shard_size is not None:
        shard_size = planned_shard_size  # resume with the shards the first run planned

    def encode(i: int) -> EncodedTranscript:
        return encode_transcript(model.tokenizer, transcripts[i], tokens, max_tokens)

    # Only lengths are kept for the whole dataset; token ids are made again shard by shard,
    # so memory does not grow with the number of transcripts.
    lengths = [len(encode(i).input_ids) for i in range(len(transcripts))]
    order = sorted(range(len(transcripts)), key=lambda i: (lengths[i], i))
    write_json_atomic(
        folder / MANIFEST,
        {
            "status": "incomplete",
            "key": asdict(key),
            "d_model": model.d_model,
            "ids": [t.id for t in transcripts],
            "shard_size": shard_size,
            "stop_at_layer": stop,
            "versions": library_versions(),
        },
    )
    shards = [order[i : i + shard_size] for i in range(0, len(order), shard_size)]
    todo = [(i, s) for i, s in enumerate(shards) if not (folder / _shard_name(i)).is_file()]
    capture = _Capture(model, hooks, stop, batch_size, per_token, dtype)
    bar = _Progress(sum(len(s) for _, s in todo), len(hooks), progress)
    for shard_index, members in todo:
        tensors = capture.shard(members, {i: encode(i) for i in members}, bar)
        atomic_write(
            folder / _shard_name(shard_index), lambda tmp, t=tensors: save_file(t, str(tmp))
        )
    bar.close()
    _mark_complete(folder, len(shards))
    return load_activation_set(folder, expect=key)
