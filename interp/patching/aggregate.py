"""Patching sweeps over several prompts, averaged: the one aggregation both studies use.

A multi-prompt study (the refusal-vs-rebuttal comparison, the organism's O/H patching) runs
one sweep per prompt with the same sites, layers and columns, then asks how much of the gap
between the clean target and the clean source a patch recovers on average. Two readings are
kept, because they answer different questions and neither is right for every study:

- **pooled** (a ratio of means): ``(mean value - mean target) / (mean source - mean target)``.
  Every prompt counts, weighted by its own gap; a prompt where source and target agree adds
  nothing to the numerator or the denominator. Undefined when the mean gap is below
  ``min_gap``.
- **per prompt** (a mean of ratios): each prompt's :attr:`PatchResult.normalised`, averaged
  over the prompts whose own gap is at least ``min_gap`` (a prompt with a gap near 0 would
  divide by ~0); how many prompts that left is recorded.

:func:`average_patches` computes both at once, with the raw mean and the clean means, so a
report can show the reading its study chose and say what it rests on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from interp.patching.result import PatchResult


@dataclass(frozen=True)
class PatchAverage:
    """Sweeps of ``n`` prompts averaged (axes ``[site, layer, column]`` as in each result)."""

    mean: Float[Tensor, "site layer column"]
    target_mean: float
    source_mean: float
    #: ratio of means; None when the mean clean gap is below ``min_gap``
    pooled: Float[Tensor, "site layer column"] | None
    #: mean of each usable prompt's normalised effect; None when no prompt is usable
    per_prompt: Float[Tensor, "site layer column"] | None
    n_per_prompt: int
    n: int
    min_gap: float

    @property
    def effect(self) -> Float[Tensor, "site layer column"]:
        """The mean change from the unpatched target."""
        return self.mean - self.target_mean


def _check_alike(results: Sequence[PatchResult]) -> None:
    if not results:
        raise ValueError("no patching results to average")
    first = results[0]
    for r in results[1:]:
        if (r.sites, r.layers, r.columns, r.metric) != (
            first.sites,
            first.layers,
            first.columns,
            first.metric,
        ):
            raise ValueError(
                "patching results to average differ in sites, layers, columns or metric: "
                f"{(first.sites, first.layers, first.columns, first.metric)} vs "
                f"{(r.sites, r.layers, r.columns, r.metric)}; run every prompt's sweep with "
                "the same settings"
            )


def average_patches(results: Sequence[PatchResult], min_gap: float = 1e-6) -> PatchAverage:
    """Both readings of ``results`` (one sweep per prompt, alike in sites, layers, columns
    and metric); see the module docstring."""
    _check_alike(results)
    values = torch.stack([r.values for r in results])
    target = torch.tensor([r.target_value for r in results], dtype=values.dtype)
    source = torch.tensor([r.source_value for r in results], dtype=values.dtype)
    mean, target_mean, source_mean = values.mean(0), target.mean(), source.mean()
    gap = float(source_mean - target_mean)
    pooled = None if abs(gap) < min_gap else (mean - target_mean) / gap
    usable = [r for r in results if abs(r.source_value - r.target_value) >= min_gap]
    per_prompt = torch.stack([r.normalised for r in usable]).mean(0) if usable else None
    return PatchAverage(
        mean=mean,
        target_mean=float(target_mean),
        source_mean=float(source_mean),
        pooled=pooled,
        per_prompt=per_prompt,
        n_per_prompt=len(usable),
        n=len(results),
        min_gap=min_gap,
    )
