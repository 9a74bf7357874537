"""The forward passes of a caching run: left-padded batches, only the requested hooks (the
pass stops after the deepest one), mean pooling of the selected tokens, and the tensors of
one shard."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import einops
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from interp.cache.budget import Budget, free_cached_memory, is_out_of_memory
from interp.data.padding import pad_left
from interp.data.tokens import EncodedTranscript
from interp.models import LoadedModel


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


class Progress:
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

    def note(self, text: str) -> None:
        """A line printed above the bar (when the bar is shown)."""
        if not self.bar.disable:
            tqdm.write(text, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


def shard_tensors(
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
class Capture:
    """What a caching run reads from each batch: ``hooks`` only (the pass stops at block
    ``stop``), pooled means and, with ``per_token``, each row's selected token vectors, stored
    in ``dtype``. ``budget`` sizes the batches (and shrinks after an out-of-memory error)."""

    model: LoadedModel
    hooks: tuple[str, ...]
    stop: int | None
    budget: Budget
    per_token: bool
    dtype: torch.dtype

    def _pass(self, batch: Sequence[EncodedTranscript]) -> tuple[Any, Tensor, Tensor] | None:
        """The hooks' activations (an ``ActivationCache``) of one left-padded batch, with its
        attention and selection masks; None after an out-of-memory error (the budget was
        halved: cut the batch again)."""
        ids, attention, selection = pad_batch(
            batch, self.model.tokenizer.pad_token_id, self.model.device
        )
        try:
            with torch.inference_mode():
                _, acts = self.model.bridge.run_with_cache(
                    ids,
                    attention_mask=attention,
                    names_filter=list(self.hooks),
                    stop_at_layer=self.stop,
                )
        except (RuntimeError, MemoryError) as err:
            if not is_out_of_memory(err):
                raise
            self.budget.back_off(len(batch), ids.shape[1], err)
            free_cached_memory(self.model.device)
            return None
        return acts, attention, selection

    def shard(
        self,
        members: Sequence[int],
        encoded: dict[int, EncodedTranscript],
        progress: Progress,
    ) -> dict[str, Tensor]:
        """Run the transcripts ``members`` of one shard, in order, in batches the budget
        allows; returns the shard's tensors (see :func:`shard_tensors`)."""
        pooled: dict[str, list[Tensor]] = {h: [] for h in self.hooks}
        per_tok: dict[str, list[Tensor]] = {h: [] for h in self.hooks}
        lengths = [len(encoded[i].input_ids) for i in members]
        start = 0
        while start < len(members):
            batch = members[start : start + self.budget.take(lengths[start:])]
            ran = self._pass([encoded[i] for i in batch])
            if ran is None:
                continue
            acts, attention, selection = ran
            for h in self.hooks:
                # a model split over GPUs holds each block's activations on its own device
                selected = selection.to(acts[h].device)
                pooled[h].append(mean_pool(acts[h], selected).to("cpu", self.dtype))
                if self.per_token:
                    mask = selected.bool()
                    per_tok[h].extend(
                        acts[h][r][mask[r]].to("cpu", self.dtype) for r in range(len(batch))
                    )
            del acts, ran
            progress.update(len(batch), int(attention.sum()))
            start += len(batch)
        return shard_tensors(members, encoded, pooled, per_tok if self.per_token else None)
