"""What identifies a checkpoint, and loading only the blocks a run needs.

:func:`checkpoint_fingerprint` names a checkpoint folder's weights without reading 140 GB or
making float64 copies: a checkpoint of up to :data:`FULL_HASH_LIMIT` bytes is hashed whole;
a larger one by its ``config.json``, each safetensors file's name, size and header (every
tensor's name, dtype, shape and offsets) and :data:`SAMPLES` evenly spaced 4 KiB samples of
its bytes (a fine-tune that changes any weight matrix changes some sample with near
certainty). The fingerprint is of the checkpoint, not of one load of it: the same for every
``dtype`` and kept block count, so a probe trained on a truncated bfloat16 load still
applies to a full float32 load (the cache key and the probe record those two separately).

:func:`cut_config` and :func:`truncate_blocks` keep blocks ``0..n-1`` only: a config
override (``num_hidden_layers`` and the per-layer lists of :data:`PER_LAYER_LISTS`) before
``from_pretrained``, which then never reads the other blocks' weights; or, for a model built
in memory, the block list cut in place. A model loaded for activations only has its output
head emptied (:func:`drop_unembedding`): a truncated model's logits would mean nothing, and
the pass then ends at the final norm.
"""

from __future__ import annotations

import hashlib
import re
import struct
from pathlib import Path
from typing import Any

import torch

from interp.artifacts import file_blake2b

#: Checkpoints up to this many bytes (all safetensors files together) are hashed whole.
FULL_HASH_LIMIT = 1 << 30
#: Evenly spaced samples read from each file of a larger checkpoint, of :data:`SAMPLE_BYTES`.
SAMPLES = 256
SAMPLE_BYTES = 4096
#: Config attributes that hold one entry per block and must be cut with the blocks (Gemma-2/3,
#: Qwen2/3 and Mistral ``layer_types``; SmolLM3 ``no_rope_layers``).
PER_LAYER_LISTS = ("layer_types", "no_rope_layers")
_BLOCK_KEY = re.compile(r"\.(?:layers|h|blocks)\.(\d+)\.")


def _header(path: Path) -> bytes:
    """The safetensors header of ``path``: its 8-byte length and JSON (names, dtypes, shapes,
    offsets)."""
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            return prefix
        (length,) = struct.unpack("<Q", prefix)
        return prefix + handle.read(min(length, 100 << 20))


def _samples(path: Path, size: int) -> bytes:
    """:data:`SAMPLES` evenly spaced chunks of :data:`SAMPLE_BYTES` of the file."""
    chunks = []
    step = max(1, (size - SAMPLE_BYTES) // max(1, SAMPLES - 1))
    with path.open("rb") as handle:
        for i in range(SAMPLES):
            handle.seek(min(i * step, max(0, size - SAMPLE_BYTES)))
            chunks.append(handle.read(SAMPLE_BYTES))
    return b"".join(chunks)


def checkpoint_fingerprint(folder: str | Path) -> str:
    """A short hash of the weights and config of the checkpoint in ``folder`` (see the module
    docstring): the whole bytes of a small checkpoint, headers, sizes and samples of a large
    one. Cost: reading at most :data:`SAMPLES` x 4 KiB plus the header of each large file."""
    root = Path(folder)
    files = sorted(root.glob("*.safetensors"))
    sizes = [f.stat().st_size for f in files]
    whole = sum(sizes) <= FULL_HASH_LIMIT
    digest = hashlib.blake2b(digest_size=12)
    config = root / "config.json"
    digest.update(config.read_bytes() if config.is_file() else b"")
    for path, size in zip(files, sizes, strict=True):
        digest.update(f"|{path.name}|{size}|".encode())
        if whole:
            digest.update(file_blake2b(path).encode())
        else:
            digest.update(_header(path))
            digest.update(_samples(path, size))
    return digest.hexdigest()


def n_blocks(config: Any) -> int:
    """The number of transformer blocks a (text) config declares."""
    return int(config.get_text_config().num_hidden_layers)


def kept_blocks(total: int, max_layer: int | None) -> int:
    """How many blocks a run that reads layers up to ``max_layer`` needs (all when None)."""
    if max_layer is None:
        return total
    if max_layer < 0:
        raise ValueError(f"max_layer must be >= 0, got {max_layer}")
    return min(total, max_layer + 1)


def cut_config(config: Any, kept: int) -> Any:
    """Make ``config`` declare only its first ``kept`` blocks (in place, as the model's
    modules share it; returns it): ``num_hidden_layers`` and every per-layer list of
    :data:`PER_LAYER_LISTS` cut to ``kept`` entries."""
    text = config.get_text_config()
    total = text.num_hidden_layers
    for name in PER_LAYER_LISTS:
        values = getattr(text, name, None)
        if isinstance(values, list | tuple) and len(values) == total:
            setattr(text, name, list(values)[:kept])
    text.num_hidden_layers = kept
    return config


def block_list(hf_model: Any) -> tuple[str, torch.nn.ModuleList]:
    """``(name, module list)`` of ``hf_model``'s transformer blocks: the shallowest
    ``ModuleList`` with one entry per block the config declares."""
    total = n_blocks(hf_model.config)
    for name, module in hf_model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == total:
            return name, module
    raise ValueError(f"{type(hf_model).__name__} has no list of {total} blocks to cut")


def truncate_blocks(hf_model: Any, kept: int) -> Any:
    """Keep only blocks ``0..kept-1`` of a model built in memory (in place; returns it): the
    block list is cut and the config edited as :func:`cut_config` does."""
    name, blocks = block_list(hf_model)
    parent_name, _, attr = name.rpartition(".")
    parent = hf_model.get_submodule(parent_name) if parent_name else hf_model
    setattr(parent, attr, torch.nn.ModuleList(list(blocks)[:kept]))
    cut_config(hf_model.config, kept)
    return hf_model


def drop_unembedding(hf_model: Any) -> None:
    """Empty the output head of a model that serves activations only (in place): a truncated
    model's logits would mean nothing (the later blocks are missing), and a full pass then
    costs nothing for the vocabulary projection (49k x d_model per token on SmolLM2), so
    reading the last block is as cheap as stopping early (the bridge's ``stop_at_layer``
    cannot stop after the last block). Logits come out with 0 columns."""
    head = hf_model.get_output_embeddings()
    if head is None:
        return
    weight = head.weight
    head.weight = torch.nn.Parameter(
        weight.new_empty(0, weight.shape[1], device=weight.device), requires_grad=False
    )
    if getattr(head, "bias", None) is not None:
        head.bias = torch.nn.Parameter(head.bias.new_empty(0), requires_grad=False)


def dropped_block_key(key: str, kept: int) -> bool:
    """Whether checkpoint key ``key`` belongs to a block at or beyond ``kept`` (a weight a
    truncated load leaves unread on purpose)."""
    match = _BLOCK_KEY.search(f".{key}")
    return match is not None and int(match.group(1)) >= kept


def weights_fingerprint(model: torch.nn.Module) -> str:
    """A short hash of the weights of a model in memory (the fingerprint of models a builder
    makes: tiny test models, :func:`interp.models.register_model`); a checkpoint on disk is
    fingerprinted from its files instead (:func:`checkpoint_fingerprint`), without loading it.

    Per tensor it hashes the name, shape, dtype, the float64 sum and sum of squares and a
    strided sample of up to 4096 values. Any fine-tuning step, merge or re-initialisation
    changes the sums.
    """
    digest = hashlib.blake2b(digest_size=12)
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // 4096)
        sample = flat[::step].to("cpu", torch.float32).contiguous().numpy()
        # numpy's sums, not torch's: torch splits a CPU reduction over its threads, so the
        # float64 rounding (and the fingerprint) changed with the thread count
        as64 = flat.to("cpu", torch.float64).numpy()
        stats = (float(as64.sum()), float((as64 * as64).sum()))
        digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|{stats}".encode())
        digest.update(sample.tobytes())
    return digest.hexdigest()
