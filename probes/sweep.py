"""A layer sweep: one probe per layer (or per any named feature set)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import Tensor

from probes.base import Probe
from probes.logistic import LogisticProbe
from probes.mean_diff import MeanDiffProbe


def fit_per_layer(
    features: Mapping[str, Tensor],
    y: Tensor,
    train: Tensor,
    make: Callable[[str], Probe],
    batched: bool = False,
) -> dict[str, Probe]:
    """Fit ``make(name)`` on ``features[name][train]`` for every feature set, in order.

    ``make`` receives the name (a hook name, say) so it can record it in the probe's meta.
    With ``batched=True`` the logistic probes (grouped by ``c``) are fitted together by
    :func:`probes.batched.fit_logistic_grid` and the mean-difference probes by
    :func:`probes.batched.fit_mean_diff_many` (same objective, one batched solve); other
    probes are fitted one by one.
    """
    if not batched:
        return {name: make(name).fit(X[train], y[train]) for name, X in features.items()}
    from probes.batched import fit_logistic_grid, fit_mean_diff_many

    probes = {name: make(name) for name in features}
    by_c: dict[float, list[str]] = {}
    mean_diff = []
    for name, probe in probes.items():
        if type(probe) is LogisticProbe:
            by_c.setdefault(probe.c, []).append(name)
        elif type(probe) is MeanDiffProbe:
            mean_diff.append(name)
        else:
            probe.fit(features[name][train], y[train])
    for c, names in by_c.items():
        fitted = fit_logistic_grid({n: features[n] for n in names}, y, [train], [c])
        for name in names:
            _adopt(probes[name], fitted[(name, 0, c)])
    if mean_diff:
        fitted_md = fit_mean_diff_many({n: features[n] for n in mean_diff}, y, train)
        for name in mean_diff:
            _adopt(probes[name], fitted_md[name])
    return probes


def _adopt(probe: Probe, fitted: Probe) -> None:
    """Give ``probe`` (with its meta and settings) the fitted tensors of ``fitted``."""
    probe.load_state(fitted.state())
    probe.d_in = fitted.d_in
    if isinstance(probe, LogisticProbe) and isinstance(fitted, LogisticProbe):
        probe.n_iter = fitted.n_iter
