"""Direction math shared by probes, controls and steering: one implementation each.

- :func:`unit`: a direction scaled to norm 1 (float32), refusing a zero or non-finite one;
- :func:`project_out`: remove a direction's component from vectors or rows of any shape;
- :func:`mean_difference`: the mean of one set of rows minus the mean of the other (the
  direction of :class:`probes.MeanDiffProbe`, of Arditi et al.'s refusal direction, of a
  trigger direction, of a yes/no contrast);
- :func:`random_directions`: seeded Gaussian directions, the random-direction control.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor


class DirectionError(ValueError):
    """A direction that cannot be used (zero, non-finite, or from an empty set)."""


def unit(direction: Float[Tensor, "*d"]) -> Float[Tensor, " d"]:
    """``direction`` flattened and scaled to norm 1 (float32); a zero or non-finite vector is
    refused."""
    d = direction.detach().float().flatten()
    norm = d.norm()
    if not torch.isfinite(norm) or norm == 0:
        raise DirectionError(
            "a direction must be a finite, non-zero vector (a difference of means is zero "
            "when the two sets read the same activations)"
        )
    return d / norm


def project_out(x: Float[Tensor, "*n d"], remove: Float[Tensor, " d"]) -> Float[Tensor, "*n d"]:
    """``x - (x . u) u`` with ``u`` the unit ``remove``: every vector of ``x`` (its last axis)
    without its component along ``remove``; computed in float32, returned in ``x``'s dtype."""
    u = unit(remove).to(x.device)
    coef = x.float() @ u
    return x - (coef[..., None] * u).to(x.dtype)


def mean_difference(a: Float[Tensor, "n d"], b: Float[Tensor, "m d"]) -> Float[Tensor, " d"]:
    """``mean(a) - mean(b)`` over rows; both sets must have rows."""
    if not len(a) or not len(b):
        raise DirectionError(
            f"a difference of means needs rows on both sides; got {len(a)} and {len(b)}"
        )
    return a.mean(0) - b.mean(0)


def random_directions(d: int, n: int, seed: int) -> Float[Tensor, "d n"]:
    """``n`` seeded random directions as the columns of a ``[d, n]`` Gaussian matrix (uniform
    on the sphere once normalised; their length does not change an AUROC, and steering
    normalises them with :func:`unit`)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(d, n, generator=gen)
