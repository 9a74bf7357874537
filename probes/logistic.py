"""L2-regularised logistic regression in torch, with standardisation stored in the probe."""

from __future__ import annotations

import math
from typing import Any, Self

import torch
from jaxtyping import Float
from torch import Tensor

from probes.base import Probe, ProbeMeta, check_xy
from probes.kinds import register_probe


@register_probe
class LogisticProbe(Probe):
    """Logistic regression on standardised activations, fitted by Newton's method.

    The objective matches scikit-learn's ``LogisticRegression(C=c)``:
    ``c * sum_i logloss_i + ||w||^2 / 2`` (bias unpenalised), here divided by ``c * n``.
    Features are standardised with the training mean and (population) standard deviation,
    as ``StandardScaler`` does, and both are saved with the probe. Newton steps solve a
    ``(d+1) x (d+1)`` system, which for residual widths up to a few thousand converges in
    about ten steps and runs on the device of ``X`` (GPU when the tensors are there).
    ``score`` returns the logit, so the default threshold 0 means probability 0.5.
    """

    kind = "logistic"

    def __init__(
        self, c: float = 1.0, max_iter: int = 100, tol: float = 1e-6, meta: ProbeMeta | None = None
    ) -> None:
        super().__init__(meta)
        if not (math.isfinite(c) and c > 0):
            raise ValueError(f"c (inverse regularisation strength) must be finite and > 0, got {c}")
        if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
            raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
        if not (math.isfinite(tol) and tol > 0):
            raise ValueError(f"tol must be finite and > 0, got {tol}")
        self.c, self.max_iter, self.tol = c, max_iter, tol
        self.mean = self.std = self.weight = self.bias = torch.empty(0)
        self.n_iter = 0

    def fit(self, X: Float[Tensor, "n d"], y: Tensor) -> Self:
        check_xy(X, y)
        X = X.float()
        n, d = X.shape
        target = y.to(X.device, torch.float64)
        self.mean = X.mean(0)
        self.std = X.std(0, unbiased=False).clamp_min(1e-6)
        # Work in float64: Newton's system is ill-conditioned when c is large.
        Z = torch.cat([(X - self.mean) / self.std, torch.ones(n, 1, device=X.device)], 1).double()
        ridge = torch.full((d + 1,), 1.0 / (self.c * n), dtype=torch.float64, device=X.device)
        ridge[-1] = 0.0  # the bias is not penalised
        theta = torch.zeros(d + 1, dtype=torch.float64, device=X.device)

        def objective(t: Tensor) -> Tensor:
            logits = Z @ t
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
            return loss + 0.5 * (ridge * t * t).sum()

        loss = objective(theta)
        for iteration in range(1, self.max_iter + 1):
            self.n_iter = iteration
            p = torch.sigmoid(Z @ theta)
            grad = Z.T @ (p - target) / n + ridge * theta
            if grad.abs().max() < self.tol:
                break
            hessian = (Z.T * (p * (1 - p) / n)) @ Z + torch.diag(ridge)
            hessian.diagonal().add_(1e-10)
            step = torch.linalg.solve(hessian, grad)
            # Backtracking keeps each step a descent step (Newton can overshoot early on).
            scale = 1.0
            while scale > 1e-6:
                candidate = theta - scale * step
                new_loss = objective(candidate)
                if new_loss <= loss:
                    break
                scale /= 2
            theta, loss = candidate, new_loss
        self.weight = theta[:-1].float()
        self.bias = theta[-1].float()
        self.d_in = d
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

    def tensor_shapes(self, d_in: int) -> dict[str, tuple[int, ...]]:
        return {"mean": (d_in,), "std": (d_in,), "weight": (d_in,), "bias": ()}

    def settings(self) -> dict[str, Any]:
        return {"c": self.c, "max_iter": self.max_iter, "tol": self.tol}
