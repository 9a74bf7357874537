"""Exact probe fits on activations that do not fit in memory, read block by block.

A *block reader* is any callable ``read(rows)`` that yields ``(rows_block, X_block)`` pairs
covering the dataset rows ``rows`` exactly once, in any order (``ActivationSet.blocks`` of
:mod:`interp.cache` bound to a hook is one; :func:`tensor_blocks` makes one of an in-memory
tensor). A fit calls it once per pass over the data, so memory holds one block plus the
fit's state, whatever the number of rows.

:func:`fit_streaming` fits a probe to the objective of its in-memory ``fit``:

- :class:`~probes.logistic.LogisticProbe`: the same standardisation (mean and population
  standard deviation of the training rows, merged block by block in float64, then float32 and
  clamped at 1e-6) and the same damped Newton iterations as ``LogisticProbe.fit``: float64
  gradient and ``(d+1) x (d+1)`` Hessian accumulated block by block, the same backtracking
  and stopping rule (max-norm of the gradient below ``tol``), so the iterates are the
  in-memory fit's up to the order of floating-point sums. A pass computes a candidate step's
  loss, gradient and Hessian together (one pass per accepted full step); a halved step costs
  a loss-only pass. Memory: the Hessian, ``8 (d+1)^2`` bytes (0.5 GB at d = 8,192), twice
  while it is solved.
- :class:`~probes.mean_diff.MeanDiffProbe`: the class means and their difference in float64
  (the in-memory fit's float32 difference of two close means can be off by ~1e-5).

:func:`select_c_streaming` chooses a logistic probe's C as
:func:`probes.batched.select_c_many` does (the same group folds, grid, skipped folds and
tie-break to the smaller C) with every fit streamed: each fold walks the C grid in ascending
order, warm-started from the previous C (a regularisation path), and the folds advance in
lockstep, so one pass over the rows serves every fold.

:func:`direction_difference` is how two fits are compared: the Euclidean distance between
their unit directions.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from probes.base import Probe
from probes.logistic import LogisticProbe
from probes.mean_diff import MeanDiffProbe
from probes.metrics import auroc
from probes.select import C_GRID, best_c, usable_folds

#: ``read(rows)`` -> ``(rows_block, X_block)`` pairs covering ``rows`` once each.
BlockReader = Callable[[Tensor], Iterable[tuple[Tensor, Tensor]]]

# What a Newton iteration asks a pass for at a point.
_LOSS, _HESSIAN = 0, 1


def tensor_blocks(X: Float[Tensor, "n d"], block_rows: int = 4096) -> BlockReader:
    """A block reader over an in-memory ``[n, d]`` tensor: blocks of up to ``block_rows`` of
    the rows asked for, in the order asked."""
    if block_rows < 1:
        raise ValueError(f"block_rows must be >= 1, got {block_rows}")

    def read(rows: Tensor) -> Iterable[tuple[Tensor, Tensor]]:
        rows = rows.long().cpu()
        for start in range(0, len(rows), block_rows):
            part = rows[start : start + block_rows]
            yield part, X[part.to(X.device)]

    return read


def direction_difference(a: Probe, b: Probe) -> float:
    """``||a.direction - b.direction||_2`` (both unit vectors): 0 for the same direction,
    about the angle in radians for a small one (``1 - cos`` is half its square)."""
    return float((a.direction.double().cpu() - b.direction.double().cpu()).norm())


@dataclass
class _Rows:
    """One fit's rows (a membership mask over dataset rows) and its standardisation."""

    member: Tensor  # [n_total] bool
    n: int
    mean: Tensor | None = None  # [d] float32, on the fit's device
    std: Tensor | None = None


@dataclass
class _Sums:
    """What a pass returns for one fit at one point: data terms summed over its rows."""

    loss: Tensor  # sum of the log-losses, float64 scalar
    grad: Tensor | None  # Z^T (p - y), [d+1]
    hessian: Tensor | None  # Z^T diag(p(1-p)) Z, [d+1, d+1]


def _union(fits: Sequence[_Rows]) -> Tensor:
    keep = torch.zeros_like(fits[0].member)
    for fit in fits:
        keep |= fit.member
    return keep.nonzero().flatten()


def _selected(fit: _Rows, rows: Tensor, X: Tensor) -> tuple[Tensor, Tensor] | None:
    """The block's rows that belong to ``fit`` (None if none do)."""
    sel = fit.member[rows]
    if not bool(sel.any()):
        return None
    if bool(sel.all()):
        return rows, X
    return rows[sel], X[sel.to(X.device)]


def _standardise(read: BlockReader, fits: Sequence[_Rows], device: torch.device) -> int:
    """Set every fit's mean and population std in one pass (Chan et al.'s merge of block
    moments, float64); returns ``d``."""
    moments: list[tuple[float, Tensor, Tensor] | None] = [None] * len(fits)
    d = -1
    for rows, X in read(_union(fits)):
        X = X.to(device)
        d = X.shape[1]
        for k, fit in enumerate(fits):
            part = _selected(fit, rows, X)
            if part is None:
                continue
            Xk = part[1].double()
            m, block_mean = len(Xk), Xk.mean(0)
            block_m2 = ((Xk - block_mean) ** 2).sum(0)
            if moments[k] is None:
                moments[k] = (m, block_mean, block_m2)
                continue
            count, mean, m2 = moments[k]  # type: ignore[misc]
            total = count + m
            delta = block_mean - mean
            moments[k] = (
                total,
                mean + delta * (m / total),
                m2 + block_m2 + delta**2 * (count * m / total),
            )
    for fit, moment in zip(fits, moments, strict=True):
        if moment is None or moment[0] != fit.n:
            raise ValueError(
                f"the block reader returned {0 if moment is None else moment[0]} of the "
                f"{fit.n} rows asked for; it must yield every requested row exactly once"
            )
        fit.mean = moment[1].float()
        fit.std = (moment[2] / fit.n).sqrt().float().clamp_min(1e-6)
    return d


def _design(X: Tensor, fit: _Rows) -> Tensor:
    """``LogisticProbe.fit``'s design matrix: standardised in float32, a ones column, float64."""
    Z = (X.float() - fit.mean) / fit.std
    return torch.cat([Z, torch.ones(len(X), 1, device=X.device)], 1).double()


def _evaluate(
    read: BlockReader,
    y: Tensor,
    fits: Sequence[_Rows],
    asks: Sequence[tuple[Tensor, int] | None],
    device: torch.device,
) -> list[_Sums | None]:
    """One pass: for every fit with a request ``(theta, what)``, the loss sum at ``theta``
    and, for ``_HESSIAN``, the gradient and Hessian sums too."""
    active = [k for k, ask in enumerate(asks) if ask is not None]
    sums: list[_Sums | None] = [None] * len(fits)
    for k in active:
        theta, what = asks[k]  # type: ignore[misc]
        zero = torch.zeros((), dtype=torch.float64, device=device)
        grad = torch.zeros_like(theta) if what == _HESSIAN else None
        hessian = theta.new_zeros(len(theta), len(theta)) if what == _HESSIAN else None
        sums[k] = _Sums(zero, grad, hessian)
    for rows, X in read(_union([fits[k] for k in active])):
        X = X.to(device)
        for k in active:
            part = _selected(fits[k], rows, X)
            if part is None:
                continue
            theta, what = asks[k]  # type: ignore[misc]
            Z, target = _design(part[1], fits[k]), y[part[0]].to(device, torch.float64)
            logits = Z @ theta
            acc = sums[k]
            assert acc is not None
            acc.loss += torch.nn.functional.binary_cross_entropy_with_logits(
                logits, target, reduction="sum"
            )
            if what == _HESSIAN:
                p = torch.sigmoid(logits)
                acc.grad += Z.T @ (p - target)  # type: ignore[operator]
                acc.hessian += (Z.T * (p * (1 - p))) @ Z  # type: ignore[operator]
    return sums


def _newton(
    n: int, c: float, tol: float, max_iter: int, theta: Tensor
) -> Generator[tuple[Tensor, int], _Sums, tuple[Tensor, int]]:
    """``LogisticProbe.fit``'s damped Newton loop from ``theta``, asking a pass for each point
    it evaluates (it yields ``(point, what)`` and is sent the pass's :class:`_Sums`)."""
    ridge = torch.full_like(theta, 1.0 / (c * n))
    ridge[-1] = 0.0  # the bias is not penalised

    def loss_of(point: Tensor, sums: _Sums) -> Tensor:
        return sums.loss / n + 0.5 * (ridge * point * point).sum()

    sums = yield theta, _HESSIAN
    loss, n_iter = loss_of(theta, sums), 0
    for iteration in range(1, max_iter + 1):
        n_iter = iteration
        assert sums.grad is not None and sums.hessian is not None
        grad = sums.grad / n + ridge * theta
        if grad.abs().max() < tol:
            break
        hessian = sums.hessian / n + torch.diag(ridge)
        hessian.diagonal().add_(1e-10)
        step = torch.linalg.solve(hessian, grad)
        del hessian
        scale = 1.0
        while scale > 1e-6:  # backtracking: accept the first step that does not raise the loss
            candidate = theta - scale * step
            sums = yield candidate, _HESSIAN if scale == 1.0 else _LOSS
            new_loss = loss_of(candidate, sums)
            if new_loss <= loss:
                break
            scale /= 2
        theta, loss = candidate, new_loss
        if sums.hessian is None and iteration < max_iter:
            sums = yield theta, _HESSIAN
    return theta, n_iter


def _c_path(
    n: int, d: int, cs: Sequence[float], tol: float, max_iter: int, device: torch.device
) -> Generator[tuple[Tensor, int], _Sums, dict[float, tuple[Tensor, int]]]:
    """Newton fits for every ``c`` in ascending order, each from the previous solution."""
    theta = torch.zeros(d + 1, dtype=torch.float64, device=device)
    out = {}
    for c in sorted(cs):
        theta, n_iter = yield from _newton(n, c, tol, max_iter, theta)
        out[c] = (theta, n_iter)
    return out


def _drive(
    read: BlockReader,
    y: Tensor,
    fits: Sequence[_Rows],
    solvers: Sequence[Generator],
    device: torch.device,
) -> list:
    """Run the solvers in lockstep: each pass over the rows answers every pending request."""
    asks: list[tuple[Tensor, int] | None] = [next(s) for s in solvers]
    results: list = [None] * len(solvers)
    while any(ask is not None for ask in asks):
        sums = _evaluate(read, y, fits, asks, device)
        for k, solver in enumerate(solvers):
            if asks[k] is None:
                continue
            try:
                asks[k] = solver.send(sums[k])
            except StopIteration as done:
                asks[k], results[k] = None, done.value
    return results


def _rows_of(y: Tensor, rows: Tensor) -> _Rows:
    """The fit over ``rows``, refusing rows that do not hold both labels."""
    rows = rows.long().cpu()
    values = set(torch.unique(y.cpu()[rows]).tolist())
    if not values <= {0, 1} or len(values) < 2:
        raise ValueError(f"y must hold both labels 0 and 1 on the rows, got {sorted(values)}")
    member = torch.zeros(len(y), dtype=torch.bool)
    member[rows] = True
    if int(member.sum()) != len(rows):
        raise ValueError("rows must not repeat a row")
    return _Rows(member, len(rows))


def _logistic(
    theta: Tensor, fit: _Rows, c: float, tol: float, max_iter: int, n_iter: int
) -> LogisticProbe:
    probe = LogisticProbe(c=c, max_iter=max_iter, tol=tol)
    _fill_logistic(probe, theta, fit, n_iter)
    return probe


def _fill_logistic(probe: LogisticProbe, theta: Tensor, fit: _Rows, n_iter: int) -> None:
    assert fit.mean is not None and fit.std is not None
    probe.mean, probe.std = fit.mean, fit.std
    probe.weight, probe.bias = theta[:-1].float(), theta[-1].float()
    probe.d_in, probe.n_iter = len(fit.mean), n_iter


def _fit_mean_diff(
    probe: MeanDiffProbe, read: BlockReader, y: Tensor, fit: _Rows, device: torch.device
) -> None:
    """``MeanDiffProbe.fit``'s probe from float64 class sums (stored in float32)."""
    sums: dict[bool, Tensor] = {}
    counts = {True: 0, False: 0}
    for rows, X in read(fit.member.nonzero().flatten()):
        X = X.to(device).double()
        positive = y[rows].to(device).bool()
        for label, sel in ((True, positive), (False, ~positive)):
            part = X[sel].sum(0)
            sums[label] = part if label not in sums else sums[label] + part
            counts[label] += int(sel.sum())
    if counts[True] + counts[False] != fit.n:
        raise ValueError("the block reader must yield every requested row exactly once")
    mean1, mean0 = sums[True] / counts[True], sums[False] / counts[False]
    diff = mean1 - mean0  # in float64: the class means can be close (float32 would cancel)
    probe.unit = (diff / diff.norm().clamp_min(1e-12)).float()
    probe.midpoint = ((mean1 + mean0) / 2).float()
    probe.d_in = len(diff)


def fit_streaming(
    probe: Probe,
    read: BlockReader,
    y: Int[Tensor, " n_total"],
    rows: Int[Tensor, " n"],
    device: str | torch.device = "cpu",
) -> Probe:
    """Fit ``probe`` (a :class:`LogisticProbe`, with its ``c``, ``tol`` and ``max_iter``, or a
    :class:`MeanDiffProbe`) on dataset rows ``rows`` read through ``read``, as its in-memory
    ``fit`` would on ``X[rows]``; ``y`` holds the labels of every dataset row. Returns it."""
    fit = _rows_of(y, rows)
    device = torch.device(device)
    if type(probe) is MeanDiffProbe:
        _fit_mean_diff(probe, read, y, fit, device)
        return probe
    if not isinstance(probe, LogisticProbe):
        raise ValueError(
            f"a {type(probe).__name__} has no streaming fit (logistic and mean_diff do); "
            "fit it in memory on acts[hook]"
        )
    _standardise(read, [fit], device)
    assert fit.mean is not None
    theta0 = torch.zeros(len(fit.mean) + 1, dtype=torch.float64, device=device)
    solver = _newton(fit.n, probe.c, probe.tol, probe.max_iter, theta0)
    [(theta, n_iter)] = _drive(read, y, [fit], [solver], device)
    _fill_logistic(probe, theta, fit, n_iter)
    return probe


def _usable_folds(
    y: Tensor, rows: Tensor, groups: Sequence[str], n_folds: int, seed: int
) -> list[tuple[Tensor, Tensor]]:
    """:func:`~probes.select.usable_folds` of ``rows`` (``groups[i]`` is the group of
    ``rows[i]``), as dataset rows."""
    if len(groups) != len(rows):
        raise ValueError(f"groups must name the group of each of the {len(rows)} rows")
    rows = rows.long().cpu()
    folds = usable_folds(y.cpu()[rows], groups, n_folds, seed)
    return [(rows[train], rows[fold]) for train, fold in folds]


def _validation_scores(
    read: BlockReader, probes: list[dict[float, LogisticProbe]], folds: list[Tensor], n: int
) -> list[dict[float, Tensor]]:
    """Every fold's probes' scores of its own validation rows (in the fold's row order)."""
    fold_of = torch.full((n,), -1, dtype=torch.long)
    position = torch.full((n,), -1, dtype=torch.long)
    for j, fold in enumerate(folds):
        fold_of[fold], position[fold] = j, torch.arange(len(fold))
    out = [{c: torch.empty(len(fold)) for c in probes[j]} for j, fold in enumerate(folds)]
    for rows, X in read(torch.cat(folds)):
        for j, by_c in enumerate(probes):
            sel = fold_of[rows] == j
            if bool(sel.any()):
                first = next(iter(by_c.values()))
                Xj = X[sel.to(X.device)].to(first.mean.device)
                for c, probe in by_c.items():
                    out[j][c][position[rows[sel]]] = probe.score(Xj).cpu()
    return out


def select_c_streaming(
    read: BlockReader,
    y: Int[Tensor, " n_total"],
    rows: Int[Tensor, " n"],
    groups: Sequence[str],
    grid: Sequence[float] = C_GRID,
    n_folds: int = 4,
    seed: int = 0,
    tol: float = 1e-6,
    max_iter: int = 100,
    device: str | torch.device = "cpu",
) -> tuple[float, dict[float, float]]:
    """The ``c`` with the best mean validation AUROC over group folds of ``rows``
    (``groups[i]`` is the group of ``rows[i]``) and the mean AUROC of every ``c``, as
    :func:`probes.batched.select_c_many` chooses it, every fit streamed through ``read``."""
    device = torch.device(device)
    usable = _usable_folds(y, rows, groups, n_folds, seed)
    fits = [_rows_of(y, train) for train, _ in usable]
    d = _standardise(read, fits, device)
    solvers = [_c_path(fit.n, d, grid, tol, max_iter, device) for fit in fits]
    paths = _drive(read, y, fits, solvers, device)
    probes = [
        {c: _logistic(theta, fit, c, tol, max_iter, k) for c, (theta, k) in path.items()}
        for fit, path in zip(fits, paths, strict=True)
    ]
    folds = [fold for _, fold in usable]
    scores = _validation_scores(read, probes, folds, len(y))
    y_cpu = y.cpu()
    results = {
        c: statistics.fmean(auroc(y_cpu[fold], scores[j][c]) for j, fold in enumerate(folds))
        for c in sorted(grid)
    }
    return best_c(results), results
