"""The controls every probe result is reported beside, and the metrics of one scored set.

- **layer 0**: the same kind of probe fitted on token embeddings (``blocks.0.hook_resid_pre``).
  Near 0.5 unless the dataset's wording leaks the label.
- **random direction**: AUROC of random unit directions at the same layer (mean over
  ``n``; the 95th percentile of ``max(a, 1 - a)`` says how far chance alone gets).
- **answer stance / reasoning stance**: the trained probe's AUROC against "the answer
  complies" and "the reasoning is ethical" alone. A probe that reads divergence, not one of
  its two ingredients, scores near 0.5 on both (the label is the XOR of the two stances).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from interp.cache import ActivationSet
from interp.data.transcripts import Transcript
from interp.probe.results import SetReport
from probes import auroc, evaluate
from probes.directions import random_directions


def stance_auroc(
    transcripts: Sequence[Transcript], scores: Float[Tensor, " n"], key: str, positive: str
) -> float | None:
    """AUROC of ``scores`` against ``meta[key] == positive``, over the transcripts whose
    ``meta`` records that stance (judged data may leave some undecided)."""
    known = [(i, t.meta[key]) for i, t in enumerate(transcripts) if t.meta.get(key) is not None]
    target = torch.tensor([int(v == positive) for _, v in known])
    if not known or not 0 < int(target.sum()) < len(target):
        return None
    return auroc(target, scores[[i for i, _ in known]])


def report_set(
    scores: Float[Tensor, " n"],
    transcripts: Sequence[Transcript],
    acts: ActivationSet,
    rows: Tensor,
    threshold: float,
    seed: int,
) -> SetReport:
    """Metrics of ``scores`` (for ``transcripts``, rows ``rows`` of ``acts``) with both
    stance controls; AUROC is left out when the set does not hold both labels."""
    labels = [t.label for t in transcripts]
    metrics = None
    if all(v is not None for v in labels) and 0 < sum(labels) < len(labels):  # type: ignore[arg-type]
        metrics = evaluate(
            torch.tensor(labels),
            scores,
            threshold,
            groups=[t.group for t in transcripts],
            seed=seed,
        )
    return SetReport(
        metrics=metrics,
        answer_stance_auroc=stance_auroc(transcripts, scores, "answer", "comply"),
        reasoning_stance_auroc=stance_auroc(transcripts, scores, "reasoning", "ethical"),
        n=len(transcripts),
        n_answer_missing=int((~acts.answer_found[rows]).sum()),
        n_truncated=int(acts.truncated[rows].sum()),
    )


def random_direction_aurocs(
    X: Float[Tensor, "n d"], y: Tensor, n: int, seed: int
) -> tuple[float, float]:
    """Mean AUROC of ``n`` random unit directions, and the 95th percentile of max(a, 1-a)."""
    return direction_aurocs((X.cpu() @ random_directions(X.shape[1], n, seed)).T, y)


def direction_aurocs(scores: Float[Tensor, "k n"], y: Tensor) -> tuple[float, float]:
    """Mean AUROC of each row of ``scores`` (one direction's projections of the ``n`` rows)
    against ``y``, and the 95th percentile of max(a, 1-a)."""
    values = [auroc(y, s) for s in scores]
    folded = sorted(max(v, 1 - v) for v in values)
    return statistics.fmean(values), folded[min(len(folded) - 1, int(0.95 * len(folded)))]
