"""Many logistic probes at once: every feature set x row subset (CV fold) x C in one solver.

The objective is exactly :class:`probes.logistic.LogisticProbe`'s: features standardised with
the training rows' mean and population standard deviation (clamped at 1e-6, computed in
float32 as the probe does), then ``c * sum_i logloss_i + ||w||^2 / 2`` with the bias
unpenalised. The results are ordinary fitted ``LogisticProbe`` objects.

Solver: Newton's method (IRLS) in the dual / kernel form, in float64, batched over systems.
By the representer theorem ``w = Z^T alpha`` for the standardised training rows ``Z``
(``n x d``), so with the kernel ``K = Z Z^T`` the logits are ``K alpha + b`` and the penalty
is ``alpha^T K alpha / (2c)``. The primal Newton step ``(Z^T D Z + I/c) dw = g`` (plus the
bias row) is solved exactly with ``dw = Z^T d_alpha``: one Cholesky factorisation of the
symmetric positive-definite ``n x n`` matrix ``I/c + D^(1/2) K D^(1/2)`` (two right-hand
sides; the bias comes from a scalar elimination), so a step costs ``n^3 / 3`` flops whatever
``d`` is, and building ``D^(1/2) K D^(1/2)`` is an elementwise scaling, not the
``n d^2`` product a primal Hessian needs. This is the right trade for activations
(``n`` rows <= ``d`` features: 432-576 x 576 for the real sweep, 2,250-3,000 x 4,096 at the
large shape); for ``n >> d`` a primal solve would be cheaper (not implemented: the dual is
still exact there, only slower). Exact Newton rather than L-BFGS / CG: the penalty ``1/c``
is as small as 0.1 and the kernel's spectrum spans many decades, so first-order methods need
hundreds to thousands of iterations to reach the precision that reproduces
``LogisticProbe``'s probes (and the C it selects), whereas Newton needs a handful.

Batching: for one C, every (feature set, fold) system is solved in one batched Cholesky
(systems of different sizes are zero-padded and masked). The C grid is walked in ascending
order, each C warm-started from the previous C's solution (a regularisation path), which
roughly halves the Newton steps. The gradient is checked before each step, and only the
systems that have not yet met the tolerance are factorised. Feature sets are processed in
chunks that keep the kernels under ``memory_bytes``. The stopping rule is ``||grad||_2 / n <
tol`` on the probe's objective divided by ``c n`` (the 2-norm bounds the max-norm
``LogisticProbe`` uses), with ``tol`` 1e-8 by default, tighter than the probe's 1e-6, so
both land on the same optimum. Everything runs on the device of the features (GPU if they
are there).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from probes.logistic import LogisticProbe
from probes.mean_diff import MeanDiffProbe
from probes.metrics import auroc
from probes.select import C_GRID, best_c, usable_folds


@dataclass
class _Block:
    """Padded dual systems of one chunk: kernels, labels, masks, and each system's
    standardised rows (to map ``alpha`` back to ``w``)."""

    K: Tensor  # [B, n, n] float64
    y: Tensor  # [B, n] float64
    mask: Tensor  # [B, n] float64, 1 for real rows
    Z: list[Tensor]  # per system [n_b, d] float32 standardised rows
    mean: list[Tensor]
    std: list[Tensor]


def _standardise(X: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``LogisticProbe.fit``'s standardisation, in float32."""
    X = X.float()
    mean = X.mean(0)
    std = X.std(0, unbiased=False).clamp_min(1e-6)
    return (X - mean) / std, mean, std


def _block(Xs: Sequence[Tensor], ys: Sequence[Tensor]) -> _Block:
    n_max = max(len(X) for X in Xs)
    device = Xs[0].device
    B = len(Xs)
    K = torch.zeros(B, n_max, n_max, dtype=torch.float64, device=device)
    y = torch.zeros(B, n_max, dtype=torch.float64, device=device)
    mask = torch.zeros(B, n_max, dtype=torch.float64, device=device)
    Zs, means, stds = [], [], []
    for k, (X, yk) in enumerate(zip(Xs, ys, strict=True)):
        Z, mean, std = _standardise(X)
        Zd = Z.double()
        n = len(X)
        K[k, :n, :n] = Zd @ Zd.T
        y[k, :n] = yk.to(device, torch.float64)
        mask[k, :n] = 1.0
        Zs.append(Z)
        means.append(mean)
        stds.append(std)
    return _Block(K, y, mask, Zs, means, stds)


def _objective(s: Tensor, y: Tensor, mask: Tensor, quad: Tensor, u: Tensor) -> Tensor:
    """``sum_i mask_i logloss(s_i, y_i) + u/2 * alpha^T K alpha`` per system."""
    loss = torch.nn.functional.binary_cross_entropy_with_logits(s, y, reduction="none")
    return (mask * loss).sum(1) + 0.5 * u * quad


def _gradient(blk: _Block, alpha: Tensor, s: Tensor, u: Tensor) -> tuple[Tensor, ...]:
    """``(r, root, v, Kv, grad)``: residuals, ``sqrt(p(1-p))``, ``r + u alpha`` and its
    kernel image, and the stopping rule's gradient norm over n, per system."""
    p = torch.sigmoid(s)
    r = blk.mask * (p - blk.y)
    root = (blk.mask * p * (1 - p)).sqrt()
    v = r + u[:, None] * alpha
    Kv = (blk.K @ v[..., None])[..., 0]
    grad = ((v * Kv).sum(1).clamp_min(0) + r.sum(1) ** 2).sqrt() / blk.mask.sum(1)
    return r, root, v, Kv, grad


def _newton_step(
    blk: _Block, u: Tensor, parts: tuple[Tensor, ...], active: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """The exact Newton direction ``(d_alpha, d_b, d_s)`` of the ``active`` systems (zero for
    the others, which are not factorised: the last steps of a chunk often move only a few)."""
    r, root, v, Kv, _ = parts
    idx = active.nonzero()[:, 0]
    K, root_a, u_a = blk.K[idx], root[idx], u[idx]
    M = K * root_a[:, :, None]
    M.mul_(root_a[:, None, :])
    M.diagonal(dim1=1, dim2=2).add_(u_a[:, None])
    L = torch.linalg.cholesky(M)
    del M
    rhs = torch.stack([root_a * Kv[idx], u_a[:, None] * root_a], -1)
    # Two triangular solves: much faster than batched cholesky_solve on CPU.
    t = torch.linalg.solve_triangular(
        L.mT, torch.linalg.solve_triangular(L, rhs, upper=False), upper=True
    )
    t1, t2 = t[..., 0], t[..., 1]
    denom = (root_a * t2).sum(1)
    safe = torch.where(denom.abs() > 1e-300, denom, torch.ones_like(denom))
    db_a = torch.where(denom.abs() > 1e-300, (r[idx].sum(1) - (root_a * t1).sum(1)) / safe, 0.0)
    da_a = (v[idx] - root_a * (t1 + db_a[:, None] * t2)) / u_a[:, None]
    da = torch.zeros_like(v).index_copy_(0, idx, da_a)
    db = torch.zeros_like(u).index_copy_(0, idx, db_a)
    ds = torch.zeros_like(v).index_copy_(0, idx, (K @ da_a[..., None])[..., 0] + db_a[:, None])
    return da, db, ds


def _solve(
    blk: _Block, u: Tensor, alpha: Tensor, b: Tensor, tol: float, max_iter: int
) -> tuple[Tensor, Tensor, int]:
    """Damped Newton on every system of ``blk`` at once, from ``(alpha, b)``; the gradient is
    checked before a step is factorised, so a converged system costs no factorisation."""
    s = (blk.K @ alpha[..., None])[..., 0] + b[:, None]
    quad = (alpha * (s - b[:, None])).sum(1)
    loss = _objective(s, blk.y, blk.mask, quad, u)
    steps = 0
    for _ in range(max_iter):
        parts = _gradient(blk, alpha, s, u)
        active = parts[-1] >= tol
        if not bool(active.any()):
            break
        da, db, ds = _newton_step(blk, u, parts, active)
        steps += 1
        q1 = (alpha * (ds - db[:, None])).sum(1)
        q2 = (da * (ds - db[:, None])).sum(1)
        scale = torch.where(active, 1.0, 0.0).to(s)
        pending = active.clone()
        for _ in range(21):  # backtracking, as LogisticProbe: accept the first non-increase
            quad_new = quad - 2 * scale * q1 + scale**2 * q2
            new = _objective(s - scale[:, None] * ds, blk.y, blk.mask, quad_new, u)
            pending &= ~(new <= loss)
            if not bool(pending.any()):
                break
            scale = torch.where(pending, scale / 2, scale)
        alpha = alpha - scale[:, None] * da
        b = b - scale * db
        s = s - scale[:, None] * ds
        quad = quad - 2 * scale * q1 + scale**2 * q2
        loss = _objective(s, blk.y, blk.mask, quad, u)
    return alpha, b, steps


def _chunks(sizes: Sequence[int], per_item: int, memory_bytes: int) -> list[list[int]]:
    """Consecutive feature-set indices grouped so each group's kernels fit the budget."""
    groups: list[list[int]] = [[]]
    for k in range(len(sizes)):
        if groups[-1] and (len(groups[-1]) + 1) * per_item * 3 > memory_bytes:
            groups.append([])
        groups[-1].append(k)
    return groups


def fit_logistic_grid(
    features: Mapping[str, Tensor],
    y: Tensor,
    row_sets: Sequence[Tensor],
    cs: Sequence[float],
    tol: float = 1e-8,
    max_iter: int = 100,
    memory_bytes: int = 2 << 30,
) -> dict[tuple[str, int, float], LogisticProbe]:
    """A fitted :class:`LogisticProbe` for every feature set x row subset x ``c``.

    ``features[name]`` is ``[n, d]``; ``row_sets[j]`` indexes its rows (the training rows
    of fold ``j``, say); ``y`` holds the labels of all ``n`` rows. Keys are
    ``(name, j, c)``. Feature sets may be a lazy mapping: each is read once per chunk.
    """
    names = list(features)
    n_max = max(len(rows) for rows in row_sets)
    per_item = len(row_sets) * n_max * n_max * 8
    out: dict[tuple[str, int, float], LogisticProbe] = {}
    for chunk in _chunks([0] * len(names), per_item, memory_bytes):
        Xs, ys, keys = [], [], []
        for k in chunk:
            X = features[names[k]]
            for j, rows in enumerate(row_sets):
                rows = rows.to(X.device)
                Xs.append(X[rows])
                ys.append(y.to(X.device)[rows])
                keys.append((names[k], j))
        blk = _block(Xs, ys)
        alpha = torch.zeros_like(blk.y)
        b = torch.zeros(len(Xs), dtype=torch.float64, device=blk.y.device)
        for c in sorted(cs):
            u = torch.full_like(b, 1.0 / c)
            alpha, b, n_iter = _solve(blk, u, alpha, b, tol, max_iter)
            for i, (name, j) in enumerate(keys):
                n = len(blk.Z[i])
                probe = LogisticProbe(c=c)
                weight = blk.Z[i].double().T @ alpha[i, :n]
                probe.mean, probe.std = blk.mean[i], blk.std[i]
                probe.weight, probe.bias = weight.float(), b[i].float()
                probe.d_in, probe.n_iter = blk.Z[i].shape[1], n_iter
                out[(name, j, c)] = probe
    return out


def select_c_many(
    features: Mapping[str, Tensor],
    y: Tensor,
    groups: Sequence[str],
    grid: Sequence[float] = C_GRID,
    n_folds: int = 4,
    seed: int = 0,
    **solver: float,
) -> dict[str, tuple[float, dict[float, float]]]:
    """:func:`probes.select.select_c` for every feature set at once: the same folds
    (:func:`~probes.select.usable_folds`), grid and tie-breaking
    (:func:`~probes.select.best_c`), with every (feature set, fold, c) fitted by
    :func:`fit_logistic_grid`."""
    usable = usable_folds(y, groups, n_folds, seed)
    y_cpu = y.cpu()
    probes = fit_logistic_grid(features, y, [t for t, _ in usable], grid, **solver)  # type: ignore[arg-type]
    chosen: dict[str, tuple[float, dict[float, float]]] = {}
    for name, X in features.items():
        results: dict[float, float] = {}
        for c in sorted(grid):
            values = [
                auroc(y_cpu[fold], probes[(name, j, c)].score(X[fold.to(X.device)]).cpu())
                for j, (_, fold) in enumerate(usable)
            ]
            results[c] = statistics.fmean(values)
        chosen[name] = (best_c(results), results)
    return chosen


def fit_mean_diff_many(
    features: Mapping[str, Tensor], y: Tensor, train: Tensor
) -> dict[str, MeanDiffProbe]:
    """A fitted :class:`MeanDiffProbe` per feature set, all from one stacked reduction when
    the feature sets share a shape (else one by one)."""
    shapes = {tuple(X.shape) for X in features.values()}
    if len(shapes) != 1:
        return {n: MeanDiffProbe().fit(X[train], y[train]) for n, X in features.items()}
    X = torch.stack([X[train.to(X.device)].float() for X in features.values()])
    positive = y[train].to(X.device).bool()
    if positive.all() or not positive.any():
        raise ValueError("y must hold both labels 0 and 1")
    mean1, mean0 = X[:, positive].mean(1), X[:, ~positive].mean(1)
    diff = mean1 - mean0
    unit = diff / diff.norm(dim=1, keepdim=True).clamp_min(1e-12)
    out = {}
    for k, name in enumerate(features):
        probe = MeanDiffProbe()
        probe.unit, probe.midpoint = unit[k], (mean1[k] + mean0[k]) / 2
        probe.d_in = X.shape[2]
        out[name] = probe
    return out
