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

from interp.artifacts import atomic_write, write_json_atomic
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


def _library_versions() -> dict[str, str]:
    import transformer_lens
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "transformer_lens": getattr(transformer_lens, "__version__", "unknown"),
    }


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

    def per_token(self, hook: str) -> list[Float[Tensor, "tokens d_model"]]:
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


def load_activation_set(path: Path, expect: CacheKey | None = None) -> ActivationSet:
    """Read a complete cache folder; with ``expect``, refuse one made from other inputs."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{path} is not an activation cache (no {MANIFEST})")
    manifest = json.loads(manifest_path.read_text())
    key = CacheKey.from_json(manifest["key"])
    if expect is not None and key != expect:
        diffs = {
            k: (v, getattr(expect, k)) for k, v in asdict(key).items() if getattr(expect, k) != v
        }
        raise CacheMismatchError(
            f"{path} holds activations of other inputs (cached vs requested: {diffs}); "
            "delete the folder or point the cache elsewhere"
        )
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


def _pad_left(
    encoded: Sequence[EncodedTranscript], pad_id: int, device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """Left-pad a batch: returns ``input_ids``, ``attention_mask`` and the selection mask."""
    width = max(len(e.input_ids) for e in encoded)
    ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    attention = torch.zeros(len(encoded), width, dtype=torch.long)
    selection = torch.zeros(len(encoded), width)
    for row, e in enumerate(encoded):
        pad = width - len(e.input_ids)
        ids[row, pad:] = torch.tensor(e.input_ids)
        attention[row, pad:] = 1
        selection[row, [pad + p for p in e.selected]] = 1.0
    return ids.to(device), attention.to(device), selection.to(device)


def mean_pool(
    acts: Float[Tensor, "batch pos d_model"], selection: Float[Tensor, "batch pos"]
) -> Float[Tensor, "batch d_model"]:
    """Mean of the selected positions of each row."""
    total = einops.einsum(acts.float(), selection, "b p d, b p -> b d")
    return total / selection.sum(dim=1, keepdim=True)


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
    if not hooks:
        raise ValueError("hooks is empty: name at least one hook, e.g. interp.hooks.hook_name(14)")
    if not transcripts:
        raise ValueError("no transcripts to cache")
    tokens = check_tokens(tokens)
    hooks = tuple(sorted(set(hooks)))
    for h in hooks:
        parse_hook_name(h)
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
    manifest_path = folder / MANIFEST
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if CacheKey.from_json(manifest["key"]) != key:
            raise CacheMismatchError(f"{folder} belongs to other inputs; delete it to rebuild")
        if manifest.get("status") == "complete":
            return load_activation_set(folder, expect=key)
        shard_size = manifest["shard_size"]  # resume with the shards the first run planned

    def encode(i: int) -> EncodedTranscript:
        return encode_transcript(model.tokenizer, transcripts[i], tokens, max_tokens)

    # Only lengths are kept for the whole dataset; token ids are made again shard by shard,
    # so memory does not grow with the number of transcripts.
    lengths = [len(encode(i).input_ids) for i in range(len(transcripts))]
    order = sorted(range(len(transcripts)), key=lambda i: (lengths[i], i))
    write_json_atomic(
        manifest_path,
        {
            "status": "incomplete",
            "key": asdict(key),
            "d_model": model.d_model,
            "ids": [t.id for t in transcripts],
            "shard_size": shard_size,
            "stop_at_layer": stop,
            "versions": _library_versions(),
        },
    )
    shards = [order[i : i + shard_size] for i in range(0, len(order), shard_size)]
    todo = [(i, s) for i, s in enumerate(shards) if not (folder / _shard_name(i)).is_file()]
    bar = tqdm(
        total=sum(len(s) for _, s in todo),
        desc=f"caching {len(hooks)} hook(s)",
        unit="transcript",
        disable=not progress,
        mininterval=1.0,
    )
    started, n_tokens = time.perf_counter(), 0
    pad_id = model.tokenizer.pad_token_id
    for shard_index, members in todo:
        encoded = {i: encode(i) for i in members}
        pooled: dict[str, list[Tensor]] = {h: [] for h in hooks}
        per_tok: dict[str, list[Tensor]] = {h: [] for h in hooks}
        for start in range(0, len(members), batch_size):
            batch = members[start : start + batch_size]
            ids, attention, selection = _pad_left([encoded[i] for i in batch], pad_id, model.device)
            with torch.inference_mode():
                _, acts = model.bridge.run_with_cache(
                    ids, attention_mask=attention, names_filter=list(hooks), stop_at_layer=stop
                )
            for h in hooks:
                pooled[h].append(mean_pool(acts[h], selection).to("cpu", dtype))
                if per_token:
                    mask = selection.bool()
                    per_tok[h].extend(
                        acts[h][r][mask[r]].to("cpu", dtype) for r in range(len(batch))
                    )
            del acts
            n_tokens += int(attention.sum())
            bar.update(len(batch))
            rate = n_tokens / (time.perf_counter() - started)
            bar.set_postfix(tok_per_s=f"{rate:.0f}", refresh=False)
        tensors = {f"pooled.{h}": torch.cat(pooled[h]) for h in hooks}
        tensors["index"] = torch.tensor(members, dtype=torch.long)
        tensors["n_selected"] = torch.tensor([len(encoded[i].selected) for i in members])
        tensors["answer_found"] = torch.tensor([int(encoded[i].answer_found) for i in members])
        tensors["truncated"] = torch.tensor([int(encoded[i].truncated) for i in members])
        if per_token:
            counts = torch.tensor([len(encoded[i].selected) for i in members])
            tensors["token_offsets"] = torch.cat(
                [torch.zeros(1, dtype=torch.long), counts.cumsum(0)]
            )
            for h in hooks:
                tensors[f"tokens.{h}"] = torch.cat(per_tok[h])
        atomic_write(
            folder / _shard_name(shard_index), lambda tmp, t=tensors: save_file(t, str(tmp))
        )
    bar.close()
    manifest: dict[str, Any] = json.loads(manifest_path.read_text())
    manifest.update(status="complete", shards=[_shard_name(i) for i in range(len(shards))])
    write_json_atomic(manifest_path, manifest)
    return load_activation_set(folder, expect=key)
