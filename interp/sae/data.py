"""Per-token activations for SAE training, streamed from the on-disk activation cache.

:func:`token_batches` reads the cache's shards one at a time, keeps the tokens of the
transcripts asked for, mixes them in a shuffle buffer and yields ``[batch, d_model]``
tensors forever (epoch after epoch, each in a new shard order). Memory holds one shard plus
the buffer, whatever the dataset's size.

Shards are the ones the cache's manifest lists and its reader checked
(:attr:`~interp.cache.ActivationSet.checked`), read through that reader, so every byte is
checked against its checksum; a stray file in the folder (``shard-00003 copy.safetensors``,
a shard left by another run) is never read.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from interp.cache import ActivationSet
from interp.cache.activation_set import CheckedShard
from interp.data.tokens import encode_transcript
from interp.data.transcripts import Transcript


def checked_shards(acts: ActivationSet) -> list[CheckedShard]:
    """The shards of ``acts`` in the manifest's order, as its reader checked them."""
    if not acts.checked:
        raise FileNotFoundError(f"{acts.path} holds no activation shards")
    return list(acts.checked)


def _check_per_token(acts: ActivationSet, hook: str) -> None:
    if not acts.key.per_token:
        raise ValueError(
            f"{acts.path} holds pooled activations only; cache with per_token=True to train an SAE"
        )
    if hook not in acts.key.hooks:
        raise KeyError(f"hook {hook!r} is not in {acts.path}; it holds {list(acts.key.hooks)}")


def shard_tokens(
    shard: CheckedShard, hook: str, keep: set[int] | None
) -> Float[Tensor, "tokens d_model"]:
    """The per-token activations of one shard, only of transcripts in ``keep`` (all if None)."""
    tokens = shard.read(f"tokens.{hook}")
    if keep is None:
        return tokens.float()
    offsets = shard.read("token_offsets").tolist()
    index = shard.rows.tolist()
    parts = [tokens[offsets[j] : offsets[j + 1]] for j, i in enumerate(index) if i in keep]
    if not parts:
        return tokens[:0].float()
    return torch.cat(parts).float()


def count_tokens(acts: ActivationSet, hook: str, keep: set[int] | None) -> int:
    return sum(len(shard_tokens(s, hook, keep)) for s in checked_shards(acts))


def token_batches(
    acts: ActivationSet,
    hook: str,
    batch_size: int,
    *,
    keep: Sequence[int] | None = None,
    buffer_tokens: int = 32_768,
    seed: int = 0,
) -> Iterator[Float[Tensor, "batch d_model"]]:
    """Shuffled ``[batch_size, d_model]`` batches of per-token activations, endlessly.

    Shards are read in a random order each epoch; their tokens go into a buffer of up to
    ``buffer_tokens`` rows; when it is full it is shuffled and half of it is yielded, so
    tokens of one transcript (and of one shard, whose transcripts have similar lengths)
    spread over many batches. ``keep`` restricts training to those transcripts (dataset rows).
    """
    _check_per_token(acts, hook)
    shards = checked_shards(acts)
    wanted = set(keep) if keep is not None else None
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    buffer = torch.empty(0, acts.d_model)
    yielded_any = False
    while True:
        order = list(shards)
        rng.shuffle(order)
        for shard in order:
            buffer = torch.cat([buffer, shard_tokens(shard, hook, wanted)])
            while len(buffer) >= buffer_tokens:
                buffer = buffer[torch.randperm(len(buffer), generator=gen)]
                n_out = max(batch_size, (len(buffer) // 2) // batch_size * batch_size)
                out, buffer = buffer[:n_out], buffer[n_out:]
                for start in range(0, n_out, batch_size):
                    yield out[start : start + batch_size]
                    yielded_any = True
        # end of an epoch: flush whole batches, carry the remainder into the next epoch
        if len(buffer) >= batch_size:
            buffer = buffer[torch.randperm(len(buffer), generator=gen)]
            n_out = len(buffer) // batch_size * batch_size
            out, buffer = buffer[:n_out], buffer[n_out:]
            for start in range(0, n_out, batch_size):
                yield out[start : start + batch_size]
                yielded_any = True
        elif not yielded_any and len(buffer) == 0:
            raise ValueError(f"{acts.path}: no tokens of the requested transcripts")


def answer_tokens(
    acts: ActivationSet,
    hook: str,
    transcripts: Sequence[Transcript],
    tokenizer: object,
) -> list[Float[Tensor, "_tokens d_model"]]:  # tokens differ per transcript
    """Per transcript, the activations of its ``Answer:`` tokens, from a ``reply`` cache.

    The answer's tokens are the tail of the reply's, so their count (from the tokenizer) says
    how many of the cached reply tokens to keep. Replies without an answer marker keep all.
    """
    if acts.key.tokens != "reply":
        raise ValueError(f"{acts.path} caches {acts.key.tokens!r} tokens; expected 'reply'")
    out = []
    for t, reply in zip(transcripts, acts.per_token(hook), strict=True):
        enc = encode_transcript(tokenizer, t, "answer", acts.key.max_tokens)
        n = len(enc.selected) if enc.answer_found else len(reply)
        out.append(reply[-n:])
    return out
