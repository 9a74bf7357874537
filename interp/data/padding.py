"""Left padding of token-id rows into a batch (the one implementation; caching and generation
both batch this way, so a row's tokens sit at the same positions in both)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Int
from torch import Tensor


def pad_left(
    rows: Sequence[Sequence[int]], pad_id: int
) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
    """``(input_ids, attention_mask)`` of rows padded on the left to the longest row.

    Padding goes on the left so that every row's last token is at the last position, where
    a causal model continues it; ``attention_mask`` is 0 on padding and 1 on tokens.
    """
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(list(r), dtype=torch.long)
        attention[i, width - len(r) :] = 1
    return ids, attention
