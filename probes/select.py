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
    folds = group_folds(groups, n_folds, seed)
    everything = torch.arange(len(y))
    results: dict[float, float] = {}
    for c in sorted(grid):
        values = []
        for fold in folds:
            train = everything[~torch.isin(everything, fold)]
            if len(set(y[fold].tolist())) < 2 or len(set(y[train].tolist())) < 2:
                continue
            probe = LogisticProbe(c=c).fit(X[train.to(X.device)], y[train.to(y.device)])
            values.append(auroc(y[fold].cpu(), probe.score(X[fold.to(X.device)]).cpu()))
        if values:
            results[c] = statistics.fmean(values)
    if not results:
        raise ValueError("no fold had both labels on each side; cannot choose c")
    best = max(results, key=lambda c: (results[c], -c))
    return best, results
