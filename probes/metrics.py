"""Metrics for probe scores: accuracy, AUROC with a bootstrap interval, recall at a fixed
false-positive rate. Scores are "higher = label 1"; labels are 0/1 tensors."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor


def _check(y: Tensor, scores: Tensor) -> tuple[Tensor, Tensor]:
    y, scores = torch.as_tensor(y).cpu(), torch.as_tensor(scores).detach().cpu().double()
    if y.shape != scores.shape or y.ndim != 1:
        raise ValueError(f"labels {tuple(y.shape)} and scores {tuple(scores.shape)} must be [n]")
    return y.long(), scores


def accuracy(y: Tensor, predicted: Tensor) -> float:
    y, predicted = torch.as_tensor(y).cpu().long(), torch.as_tensor(predicted).cpu().long()
    return float((y == predicted).double().mean())


def auroc(y: Tensor, scores: Float[Tensor, " n"]) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties).

    The probability that a random label-1 row scores above a random label-0 row.
    """
    y, scores = _check(y, scores)
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUROC needs both labels; got {n_pos} positives and {n_neg} negatives")
    order = torch.argsort(scores)
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    sorted_scores = scores[order]
    # average ranks over ties
    unique, inverse, counts = torch.unique(sorted_scores, return_inverse=True, return_counts=True)
    if len(unique) < len(scores):
        rank_sum = torch.zeros(len(unique), dtype=torch.float64).index_add_(
            0, inverse, ranks[order]
        )
        ranks[order] = (rank_sum / counts)[inverse]
    u = ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def auroc_ci(
    y: Tensor,
    scores: Tensor,
    groups: Sequence[str] | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval for AUROC.

    With ``groups`` (scenario ids) the bootstrap resamples whole groups: rows of one
    scenario are not independent, and resampling rows alone gives intervals that are too
    narrow. Resamples with a single class are skipped.
    """
    y, scores = _check(y, scores)
    gen = torch.Generator().manual_seed(seed)
    if groups is None:
        clusters = [torch.tensor([i]) for i in range(len(y))]
    else:
        names = sorted(set(groups))
        lookup = {g: k for k, g in enumerate(names)}
        ids = torch.tensor([lookup[g] for g in groups])
        clusters = [torch.nonzero(ids == k).flatten() for k in range(len(names))]
    values = []
    for _ in range(n_boot):
        pick = torch.randint(len(clusters), (len(clusters),), generator=gen)
        rows = torch.cat([clusters[k] for k in pick.tolist()])
        yb = y[rows]
        if 0 < int(yb.sum()) < len(yb):
            values.append(auroc(yb, scores[rows]))
    if not values:
        return (math.nan, math.nan)
    v = torch.tensor(values, dtype=torch.float64)
    alpha = (1 - level) / 2
    return float(torch.quantile(v, alpha)), float(torch.quantile(v, 1 - alpha))


def threshold_at_fpr(negative_scores: Tensor, fpr: float = 0.01) -> float:
    """The lowest threshold that flags at most ``fpr`` of ``negative_scores`` (flag = score
    strictly above it). With few negatives this is coarse: at 1% and 100 negatives, the
    largest negative score itself."""
    neg = torch.as_tensor(negative_scores).detach().cpu().double().sort(descending=True).values
    if len(neg) == 0:
        raise ValueError("no negative scores to set a threshold from")
    allowed = math.floor(fpr * len(neg))
    return float(neg[min(allowed, len(neg) - 1)])


def recall_at_fpr(
    y: Tensor, scores: Tensor, fpr: float = 0.01, negative_scores: Tensor | None = None
) -> tuple[float, float]:
    """Recall of label-1 rows at the threshold that flags ``fpr`` of the negatives.

    The negatives are ``negative_scores`` when given (a control set, e.g. ordinary chat),
    else the label-0 rows of ``y``. Returns ``(recall, threshold)``.
    """
    y, scores = _check(y, scores)
    negatives = scores[y == 0] if negative_scores is None else negative_scores
    threshold = threshold_at_fpr(negatives, fpr)
    positives = scores[y == 1]
    if len(positives) == 0:
        raise ValueError("recall needs label-1 rows")
    return float((positives > threshold).double().mean()), threshold


@dataclass(frozen=True)
class Evaluation:
    """Scores of one probe on one labelled set."""

    n: int
    n_positive: int
    accuracy: float
    auroc: float
    auroc_low: float
    auroc_high: float
    recall_at_1pct_fpr: float
    threshold_at_1pct_fpr: float


def evaluate(
    y: Tensor,
    scores: Tensor,
    threshold: float = 0.0,
    groups: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> Evaluation:
    """Accuracy at ``threshold``, AUROC with a (group) bootstrap 95% interval, and recall at
    1% false positives among this set's own negatives."""
    y, scores = _check(y, scores)
    low, high = auroc_ci(y, scores, groups, n_boot=n_boot, seed=seed)
    recall, thr = recall_at_fpr(y, scores, 0.01)
    return Evaluation(
        n=len(y),
        n_positive=int(y.sum()),
        accuracy=accuracy(y, scores >= threshold),
        auroc=auroc(y, scores),
        auroc_low=low,
        auroc_high=high,
        recall_at_1pct_fpr=recall,
        threshold_at_1pct_fpr=thr,
    )
