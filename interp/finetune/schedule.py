"""The learning-rate schedule of a fine-tune: an optional linear warm-up, then constant, linear
or cosine decay.

The factor of step ``t`` (0-based) depends only on ``t`` and the settings, never on state, so
a resumed run sets the same rates as an uninterrupted one without saving a scheduler:

- warm-up (``t < warmup``): ``(t + 1) / warmup``, so the first step already moves and step
  ``warmup - 1`` runs at the full rate;
- after it, with ``p = (t - warmup) / (steps - warmup)`` (0 at the first step after warm-up,
  below 1 at the last): ``constant`` 1, ``linear`` ``1 - p``, ``cosine`` ``(1 + cos(pi p)) / 2``.
  Both decays approach 0 at the end of training and never reach it on a step that trains.
"""

from __future__ import annotations

import math

SCHEDULES = ("constant", "linear", "cosine")


def lr_factor(step: int, steps: int, warmup: int = 0, schedule: str = "constant") -> float:
    """The multiple of the base learning rate used at 0-based ``step`` of ``steps``."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if not 0 <= step < steps:
        raise ValueError(f"step {step} is outside the run's {steps} steps")
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / (steps - warmup)
    if schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))
