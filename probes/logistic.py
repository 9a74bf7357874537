"""L2-regularised logistic regression in torch, with standardisation stored in the probe."""

from __future__ import annotations

from typing import Any, Self

import torch
from jaxtyping import Float
from torch import Tensor

from probes.base import Probe, ProbeMeta, check_xy
from probes.registry import register_probe


@register_probe
class LogisticProbe(Probe):
    """Logistic regression on standardised activations, fitted with L-BFGS.

    The objective matches scikit-learn's ``LogisticRegression(C=c)``:
    ``c * sum_i logloss_i + ||w||^2 / 2`` (bias unpenalised), here divided by ``c * n`` for
    a well-scaled optimisation. Features are standardised with the training mean and
    standard deviation, which are saved with the probe. It runs on the device of ``X``.
    ``score`` returns the logit, so the default threshold 0 means probability 0.5.
    """

    kind = "logistic"

    def __init__(
        self, c: float = 1.0, max_iter: int = 500, tol: float = 1e-6, meta: ProbeMeta | None = None
    ) -> None:
        super().__init__(meta)
        if c <= 0:
            raise ValueError(f"c (inverse regularisation strength) must be > 0, got {c}")
        self.c, self.max_iter, self.tol = c, max_iter, tol
        self.mean = self.std = self.weight = self.bias = torch.empty(0)

    def fit(self, X: Float[Tensor, "n d"], y: Tensor) -> Self:
        check_xy(X, y)
        X = X.float()
        target = y.to(X.device, torch.float32)
        self.mean = X.mean(0)
        self.std = X.std(0).clamp_min(1e-6)
        Z = (X - self.mean) / self.std
        w = torch.zeros(X.shape[1], device=X.device, requires_grad=True)
        b = torch.zeros((), device=X.device, requires_grad=True)
        penalty = 1.0 / (2.0 * self.c * len(X))
        optimiser = torch.optim.LBFGS(
            [w, b],
            max_iter=self.max_iter,
            tolerance_grad=self.tol,
            tolerance_change=1e-9,
            history_size=20,
            line_search_fn="strong_wolfe",
        )

        def closure() -> Tensor:
            optimiser.zero_grad()
            logits = Z @ w + b
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
            loss = loss + penalty * (w * w).sum()
            loss.backward()
            return loss

        optimiser.step(closure)
        self.weight, self.bias = w.detach(), b.detach()
        self.d_in = X.shape[1]
        return self

    def _score(self, X: Float[Tensor, "n d"]) -> Float[Tensor, " n"]:
        return ((X - self.mean) / self.std) @ self.weight + self.bias

    @property
    def direction(self) -> Float[Tensor, " d"]:
        raw = self.weight / self.std
        return raw / raw.norm()

    def state(self) -> dict[str, Tensor]:
        return {"mean": self.mean, "std": self.std, "weight": self.weight, "bias": self.bias}

    def load_state(self, tensors: dict[str, Tensor]) -> None:
        self.mean, self.std = tensors["mean"], tensors["std"]
        self.weight, self.bias = tensors["weight"], tensors["bias"]

    def settings(self) -> dict[str, Any]:
        return {"c": self.c, "max_iter": self.max_iter, "tol": self.tol}
