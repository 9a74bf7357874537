"""What every command's config shares: :class:`ConfigError` and the coercions that let the
API accept what the CLI accepts (``layers=14``, ``layers="0-3"``, ``layers=[0, 7]``).

The configs themselves live with their feature (``interp.probe.config.ProbeConfig``,
``interp.finetune.config.FinetuneConfig``, ``interp.sae.config.SAEConfig``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from interp.hooks import HookError, parse_layers


class ConfigError(ValueError):
    """An invalid option; the message names the option and the valid values."""


def as_layers(value: int | str | Iterable[int]) -> tuple[int, ...]:
    """``14``, ``"0-3"``, ``"0,7,14"`` or ``[7, 0]`` -> sorted unique layers.

    Raises :class:`HookError` (a ``ValueError``) naming the accepted forms.
    """
    if isinstance(value, bool):
        raise HookError(f"layers must be layer numbers, got {value!r}")
    if isinstance(value, int):
        layers: tuple[int, ...] = (value,)
    elif isinstance(value, str):
        layers = parse_layers(value)
    else:
        try:
            layers = tuple(int(v) for v in value)
        except (TypeError, ValueError):
            raise HookError(
                f"cannot read layers {value!r}: give one layer (14), a range ('0-29'), "
                "a list ('0,7,14' or [0, 7, 14])"
            ) from None
    if not layers:
        raise ConfigError("layers is empty: give at least one layer, e.g. --layer 14")
    if min(layers) < 0:
        raise HookError(f"layers must be >= 0, got {layers}")
    return tuple(sorted(set(layers)))


def __getattr__(name: str) -> Any:
    # ``from interp.config import ProbeConfig`` (its old home) keeps working for one release.
    if name == "ProbeConfig":
        from interp.probe.config import ProbeConfig

        return ProbeConfig
    raise AttributeError(f"module 'interp.config' has no attribute {name!r}")
