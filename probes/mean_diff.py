"""Difference-of-means probe: the direction from the mean of class 0 to the mean of class 1."""

from __future__ import annotations

from typing import Any, Self

import torch
from jaxtyping import Float
from torch import Tensor

from probes.base import Probe, ProbeMeta, check_xy
from probes.kinds import register_probe


@register_probe
class MeanDiffProbe(Probe):
    """Projects activations on ``mean(X[y=1]) - mean(X[y=0])`` (unit length), centred on the
    midpoint of the two class means, so the default threshold 0 splits them halfway. No
    hyper-parameters and no optimisation: a baseline that is hard to overfit."""

    kind = "mean_diff"

    def __init__(self, meta: ProbeMeta | None = None) -> None:
        super().__init__(meta)
        self.unit = self.midpoint = torch.empty(0)

    def fit(self, X: Float[Tensor, "n d"], y: Tensor) -> Self:
        check_xy(X, y)
        X = X.float()
        positive = y.to(X.device).bool()
        mean1, mean0 = X[positive].mean(0), X[~positive].mean(0)
        diff = mean1 - mean0
        self.unit = diff / diff.norm().clamp_min(1e-12)
        self.midpoint = (mean1 + mean0) / 2
        self.d_in = X.shape[1]
        return self

    def _score(self, X: Float[Tensor, "n d"]) -> Float[Tensor, " n"]:
        return (X - self.midpoint) @ self.unit

    @property
    def direction(self) -> Float[Tensor, " d"]:
        return self.unit

    def state(self) -> dict[str, Tensor]:
        return {"unit": self.unit, "midpoint": self.midpoint}

    def load_state(self, tensors: dict[str, Tensor]) -> None:
        self.unit, self.midpoint = tensors["unit"], tensors["midpoint"]

    def tensor_shapes(self, d_in: int) -> dict[str, tuple[int, ...]]:
        return {"unit": (d_in,), "midpoint": (d_in,)}

    def settings(self) -> dict[str, Any]:
        return {}
