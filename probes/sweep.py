"""A layer sweep: one probe per layer (or per any named feature set)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import Tensor

from probes.base import Probe


def fit_per_layer(
    features: Mapping[str, Tensor],
    y: Tensor,
    train: Tensor,
    make: Callable[[str], Probe],
) -> dict[str, Probe]:
    """Fit ``make(name)`` on ``features[name][train]`` for every feature set, in order.

    ``make`` receives the name (a hook name, say) so it can record it in the probe's meta.
    """
    return {name: make(name).fit(X[train], y[train]) for name, X in features.items()}
