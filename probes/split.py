"""Group-aware train/test split: a scenario (group) is never on both sides."""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
from torch import Tensor


def group_split(
    groups: Sequence[str],
    test_fraction: float = 0.25,
    seed: int = 0,
    strata: Sequence[str] | None = None,
) -> tuple[Tensor, Tensor]:
    """Row indices ``(train, test)``; whole groups go to one side.

    ``round(test_fraction * n_groups)`` groups (at least one, at most all but one) go to the
    test side. With ``strata`` (e.g. each row's domain), test groups are spread over the
    strata: groups are shuffled within each stratum and taken round-robin across strata.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    names = sorted(set(groups))
    if len(names) < 2:
        raise ValueError(f"a group split needs at least 2 groups, got {len(names)}")
    rng = random.Random(seed)
    stratum_of = dict(zip(groups, strata, strict=True)) if strata is not None else {}
    by_stratum: dict[str, list[str]] = {}
    for g in names:
        by_stratum.setdefault(stratum_of.get(g, ""), []).append(g)
    for members in by_stratum.values():
        rng.shuffle(members)
    stratum_order = sorted(by_stratum)
    rng.shuffle(stratum_order)
    # round-robin: first of every stratum, then second of every stratum, ...
    ranked = [
        (rank, s_index, g)
        for s_index, s in enumerate(stratum_order)
        for rank, g in enumerate(by_stratum[s])
    ]
    ranked.sort()
    n_test = min(max(1, round(test_fraction * len(names))), len(names) - 1)
    test_groups = {g for _, _, g in ranked[:n_test]}
    test = [i for i, g in enumerate(groups) if g in test_groups]
    train = [i for i, g in enumerate(groups) if g not in test_groups]
    return torch.tensor(train, dtype=torch.long), torch.tensor(test, dtype=torch.long)
