"""Choosing a probe's regularisation by cross-validation over groups (scenarios).

Folds are whole groups, as in the train/test split, so the chosen strength is the one that
generalises to unseen scenarios; the held-out test set is never looked at.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import torch
from torch import Tensor

from probes.logistic import LogisticProbe
from probes.metrics import auroc

C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)


def group_folds(groups: Sequence[str], n_folds: int, seed: int = 0) -> list[Tensor]:
    """Row indices of ``n_folds`` validation folds, each a set of whole groups."""
    names = sorted(set(groups))
    if len(names) < n_folds:
        raise ValueError(f"{n_folds} folds need at least {n_folds} groups, got {len(names)}")
    order = torch.randperm(len(names), generator=torch.Generator().manual_seed(seed)).tolist()
    fold_of = {names[k]: rank % n_folds for rank, k in enumerate(order)}
    return [
        torch.tensor([i for i, g in enumerate(groups) if fold_of[g] == f]) for f in range(n_folds)
    ]


def usable_folds(
    y: Tensor, groups: Sequence[str], n_folds: int, seed: int = 0
) -> list[tuple[Tensor, Tensor]]:
    """``(train_rows, fold_rows)`` of every :func:`group_folds` fold with both labels on each
    side (a fold without them cannot be scored by AUROC, so every selection skips it)."""
    y = y.cpu()
    everything = torch.arange(len(y))
    usable = []
    for fold in group_folds(groups, n_folds, seed):
        train = everything[~torch.isin(everything, fold)]
        if len(set(y[fold].tolist())) == 2 and len(set(y[train].tolist())) == 2:
            usable.append((train, fold))
    if not usable:
        raise ValueError("no fold had both labels on each side; cannot choose c")
    return usable


def best_c(results: dict[float, float]) -> float:
    """The ``c`` with the best mean validation AUROC; ties go to the smaller ``c``."""
    return max(results, key=lambda c: (results[c], -c))


def select_c(
    X: Tensor,
    y: Tensor,
    groups: Sequence[str],
    grid: Sequence[float] = C_GRID,
    n_folds: int = 4,
    seed: int = 0,
) -> tuple[float, dict[float, float]]:
    """The ``c`` of :class:`LogisticProbe` with the best mean validation AUROC over
    group folds, and the mean AUROC of every ``c`` tried (ties go to the smaller ``c``)."""
    usable = usable_folds(y, groups, n_folds, seed)
    results: dict[float, float] = {}
    for c in sorted(grid):
        values = []
        for train, fold in usable:
            probe = LogisticProbe(c=c).fit(X[train.to(X.device)], y[train.to(y.device)])
            values.append(auroc(y[fold].cpu(), probe.score(X[fold.to(X.device)]).cpu()))
        results[c] = statistics.fmean(values)
    return best_c(results), results
