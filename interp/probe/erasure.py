"""Stance erasure: remove the answer-stance and reasoning-stance concepts from activations
with LEACE (Belrose et al. 2023, EleutherAI's ``concept-erasure`` package) before a
divergence probe is fitted.

The divergence label is the XOR of two stances (the reasoning is ethical, the answer
complies). A probe that partly reads one stance scores off 0.5 on that stance's control
(``interp.probe.controls``). LEACE finds the least-squares edit of the activations after
which no linear classifier predicts either stance better than a constant (on the data it was
fitted on); a divergence probe fitted on the erased activations can then only use what is
linearly left: the divergence itself, if the model represents it beyond its two ingredients.

:func:`stance_eraser` fits the eraser on training rows only (the held-out scenarios never
inform it); :func:`erasure_report` compares divergence AUROC and both stance AUROCs of a
logistic probe before and after erasure, on held-out rows or another set.

Wiring into the pipeline (not done yet): a ``ProbeConfig.erase_stances`` flag; in
``train_probe``, after caching, fit one eraser per hook on the training rows
(:func:`stance_eraser`) and replace ``acts[hook]`` by :func:`erase` of it for the fit, the
held-out evaluation, the control and eval sets; save each eraser beside its probe so that
``score_transcripts`` applies the same edit; record the flag in ``RUN_IDENTITY``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from interp.data.transcripts import Transcript
from probes import LogisticProbe, auroc

#: The erased concepts: ``meta`` key and the value that counts as 1.
STANCES = (("answer", "comply"), ("reasoning", "ethical"))


class ErasureError(ValueError):
    """Data that cannot fit an eraser (a stance missing or of one value only)."""


def stance_matrix(transcripts: Sequence[Transcript]) -> Float[Tensor, "n 2"]:
    """One column per stance of :data:`STANCES` (1.0 when ``meta[key] == value``)."""
    rows = []
    for t in transcripts:
        missing = [key for key, _ in STANCES if t.meta.get(key) is None]
        if missing:
            raise ErasureError(
                f"transcript {t.id!r} records no {missing} stance in meta; erasure needs both "
                "stances on every training row (judge generated data first, or drop the row)"
            )
        rows.append([float(t.meta[key] == value) for key, value in STANCES])
    return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), len(STANCES))


def stance_eraser(X: Float[Tensor, "n d"], transcripts: Sequence[Transcript]) -> Any:
    """A ``concept_erasure.LeaceEraser`` fitted on ``X`` to erase both stances."""
    from concept_erasure import LeaceEraser

    Z = stance_matrix(transcripts)
    constant = [key for (key, _), col in zip(STANCES, Z.T, strict=True) if col.min() == col.max()]
    if constant:
        raise ErasureError(
            f"the {constant} stance takes one value on every training row; LEACE needs both"
        )
    return LeaceEraser.fit(X.double(), Z.double())


def erase(eraser: Any, X: Float[Tensor, "n d"]) -> Float[Tensor, "n d"]:
    """``X`` with the fitted concepts erased (same dtype as ``X``)."""
    return eraser(X.double()).to(X.dtype)


def _aurocs(scores: Tensor, transcripts: Sequence[Transcript]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    y = torch.tensor([int(t.label or 0) for t in transcripts])
    out["divergence_auroc"] = auroc(y, scores) if 0 < int(y.sum()) < len(y) else None
    for key, value in STANCES:
        known = [i for i, t in enumerate(transcripts) if t.meta.get(key) is not None]
        z = torch.tensor([int(transcripts[i].meta[key] == value) for i in known])
        ok = bool(known) and 0 < int(z.sum()) < len(z)
        out[f"{key}_stance_auroc"] = auroc(z, scores[known]) if ok else None
    return out


def erasure_report(
    X_train: Float[Tensor, "n d"],
    train: Sequence[Transcript],
    X_test: Float[Tensor, "m d"],
    test: Sequence[Transcript],
    c: float = 1.0,
) -> dict[str, dict[str, float | None]]:
    """Divergence AUROC and both stance AUROCs on ``test`` of a logistic probe (inverse L2
    strength ``c``) fitted on ``train``, without and with stance erasure (the eraser is
    fitted on ``train`` only, then applied to both). ``test`` may be another set than the
    training one (e.g. a model's own generations, judged)."""
    y = torch.tensor([int(t.label or 0) for t in train])
    eraser = stance_eraser(X_train, train)
    out = {}
    for name, (fit_X, test_X) in (
        ("before", (X_train, X_test)),
        ("after", (erase(eraser, X_train), erase(eraser, X_test))),
    ):
        probe = LogisticProbe(c=c).fit(fit_X, y)
        out[name] = _aurocs(probe.score(test_X), test)
    return out
