"""Stance erasure: remove the answer-stance and reasoning-stance concepts from activations
with LEACE (Belrose et al. 2023, EleutherAI's ``concept-erasure`` package) before a
divergence probe is fitted.

The divergence label is the XOR of two stances (the reasoning is ethical, the answer
complies). A probe that partly reads one stance scores off 0.5 on that stance's control
(``interp.probe.controls``). LEACE finds the least-squares edit of the activations after
which no linear classifier predicts either stance better than a constant (on the data it was
fitted on); a divergence probe fitted on the erased activations can then only use what is
linearly left: the divergence itself, if the model represents it beyond its two ingredients.

- :func:`fit_stance_eraser` fits one eraser from any block reader (``ActivationSet.blocks``
  bound to a hook, or :func:`probes.streaming.tensor_blocks` of a tensor), feeding
  ``concept_erasure.LeaceFitter.update`` block by block: the in-memory and the streamed
  (out-of-core) paths are the same code, and only the rows asked for (the training
  scenarios') inform it. :func:`stance_eraser` is the in-memory shorthand.
- :func:`erase` applies a fitted eraser; :class:`ErasedActivationSet` is an
  :class:`~interp.cache.ActivationSet` whose every read (``acts[hook]``, ``blocks``,
  ``map_rows``) comes back erased, so the pipeline's fits, controls and streamed paths need
  no change of their own.
- :func:`erasure_report` compares divergence AUROC and both stance AUROCs of a logistic probe
  before and after erasure, on held-out rows or another set.

``ProbeConfig.erase_stances`` (``--erase-stances``) wires it into ``train_probe``; a probe
fitted on erased activations is saved with its eraser (:mod:`interp.probe.erased_probe`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from functools import partial
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.cache import ActivationSet
from interp.data.transcripts import Transcript
from probes import LogisticProbe, auroc
from probes.streaming import BlockReader, tensor_blocks

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


def training_stances(transcripts: Sequence[Transcript]) -> Float[Tensor, "n 2"]:
    """:func:`stance_matrix` of the rows an eraser is fitted on, refusing a stance that takes
    one value on every row (LEACE has nothing to erase then, and the stance controls no
    meaning)."""
    Z = stance_matrix(transcripts)
    constant = [key for (key, _), col in zip(STANCES, Z.T, strict=True) if col.min() == col.max()]
    if constant:
        raise ErasureError(
            f"the {constant} stance takes one value on every training row; LEACE needs both"
        )
    if len(Z) < 2:
        raise ErasureError(f"{len(Z)} training row(s); fitting an eraser needs at least 2")
    return Z


def fit_stance_eraser(
    read: BlockReader,
    rows: Int[Tensor, " m"],
    stances: Float[Tensor, "n 2"],
    d: int,
    device: str | torch.device = "cpu",
) -> Any:
    """A ``concept_erasure.LeaceEraser`` (on the CPU) fitted on the dataset rows ``rows``
    only, read block by block from ``read`` (``read(rows)`` yields ``(rows_block, X_block)``,
    as :mod:`probes.streaming` defines it); ``stances[i]`` is dataset row ``i``'s stance
    vector (rows not in ``rows`` are never read). The statistics are accumulated in float64
    on ``device`` (the CPU where float64 is not supported)."""
    from concept_erasure import LeaceFitter

    device = torch.device(device)
    if device.type not in ("cpu", "cuda"):  # MPS has no float64
        device = torch.device("cpu")
    fitter = LeaceFitter(d, stances.shape[1], device=device, dtype=torch.float64)
    for block_rows, X in read(rows):
        fitter.update(X.to(device, torch.float64), stances[block_rows].to(device, torch.float64))
    return eraser_to(fitter.eraser, "cpu")


def stance_eraser(X: Float[Tensor, "n d"], transcripts: Sequence[Transcript]) -> Any:
    """A ``concept_erasure.LeaceEraser`` fitted on ``X`` to erase both stances."""
    Z = training_stances(transcripts)
    rows = torch.arange(len(X))
    return fit_stance_eraser(tensor_blocks(X, block_rows=max(1, len(X))), rows, Z, X.shape[1])


def eraser_to(eraser: Any, device: str | torch.device) -> Any:
    """``eraser`` with its tensors on ``device``."""
    from concept_erasure import LeaceEraser

    bias = None if eraser.bias is None else eraser.bias.to(device)
    return LeaceEraser(eraser.proj_left.to(device), eraser.proj_right.to(device), bias)


def erase(eraser: Any, X: Float[Tensor, "*batch d"]) -> Float[Tensor, "*batch d"]:
    """``X`` with the fitted concepts erased: the edit is computed in float64 on the eraser's
    device; the result has ``X``'s dtype and device. The edit is affine, so it commutes with
    mean pooling (per-token vectors may be erased too)."""
    edited = eraser(X.to(eraser.proj_left.device, torch.float64))
    return edited.to(X.device, X.dtype)


def fit_stance_erasers(
    acts: ActivationSet,
    hooks: Sequence[str],
    transcripts: Sequence[Transcript],
    train: Int[Tensor, " m"],
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """One eraser per hook of ``acts`` (``transcripts`` in its row order), fitted on the
    training rows ``train`` only, streamed from the cache block by block."""
    stances = torch.zeros(len(transcripts), len(STANCES))
    stances[train] = training_stances([transcripts[i] for i in train.tolist()])
    return {
        hook: fit_stance_eraser(partial(acts.blocks, hook), train, stances, acts.d_model, device)
        for hook in hooks
    }


@dataclass
class ErasedActivationSet(ActivationSet):
    """An :class:`~interp.cache.ActivationSet` read through stance erasers: every read of a
    hook in ``erasers`` (``acts[hook]``, ``read``, ``map_rows``, ``blocks``, which the others
    go through) returns the erased vectors; other hooks read as cached. Build it with
    :func:`erased_view`."""

    erasers: dict[str, Any] = field(default_factory=dict, repr=False)

    def blocks(
        self, hook: str, rows: Tensor | None = None
    ) -> Iterator[tuple[Int[Tensor, " m"], Float[Tensor, "m d_model"]]]:
        eraser = self.erasers.get(hook)
        for index, X in super().blocks(hook, rows):
            yield index, X if eraser is None else erase(eraser, X)


def erased_view(acts: ActivationSet, erasers: dict[str, Any]) -> ErasedActivationSet:
    """``acts`` read through ``erasers`` (hook -> eraser); the same cache folder and shards,
    and none of the matrices ``acts`` holds in memory."""
    kept = {f.name: getattr(acts, f.name) for f in fields(ActivationSet) if f.name != "_loaded"}
    return ErasedActivationSet(**kept, erasers=dict(erasers))


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
