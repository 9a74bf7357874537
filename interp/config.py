"""What every command's config shares: :class:`ConfigError` and the coercions that let the
API accept what the CLI accepts (``layers=14``, ``layers="0-3"``, ``layers=[0, 7]``).

The configs themselves live with their feature (``interp.probe.config.ProbeConfig``,
``interp.finetune.config.FinetuneConfig``, ``interp.sae.config.SAEConfig``).
"""

from __future__ import annotations

import math
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


def _range_text(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high}"
    return "a number"


def check_number(
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
    hint: str = "",
    error: type[ValueError] = ConfigError,
) -> None:
    """Refuse ``value`` of option ``name`` unless it is a finite number (an ``int`` if
    ``integer``; never a ``bool``) within ``[low, high]`` (``low_open``/``high_open`` exclude
    an end). The message names the option and the valid range (``hint`` is appended to the
    range), so NaN, infinities and out-of-range values never reach the computation:
    ``c must be a finite number > 0 (or None for cross-validation), got nan``.
    """
    rng = _range_text(low, high, low_open, high_open) + hint
    if isinstance(value, bool) or not isinstance(value, int if integer else int | float):
        kind = "an integer" if integer else "a finite number"
        raise error(f"{name} must be {kind} {rng}, got {value!r}")
    if not math.isfinite(value):
        raise error(f"{name} must be a finite number {rng}, got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        raise error(f"{name} must be {rng}, got {value!r}")


def __getattr__(name: str) -> Any:
    # ``from interp.config import ProbeConfig`` (its old home) keeps working for one release.
    if name == "ProbeConfig":
        from interp.probe.config import ProbeConfig

        return ProbeConfig
    raise AttributeError(f"module 'interp.config' has no attribute {name!r}")
