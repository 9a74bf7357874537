"""Small statistics helpers for rates reported in tables."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Rate:
    """``k`` of ``n`` with a 95% Wilson score interval (sound for small n and rates near 0 or 1)."""

    k: int
    n: int
    rate: float
    low: float
    high: float

    def __str__(self) -> str:
        if self.n == 0:
            return "   -"
        return f"{self.rate:5.1%} [{self.low:4.0%}, {self.high:4.0%}] ({self.k}/{self.n})"


def wilson(k: int, n: int, z: float = 1.959964) -> Rate:
    """The rate ``k / n`` and its Wilson score interval at the confidence of ``z``."""
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return Rate(0, 0, math.nan, math.nan, math.nan)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Rate(k, n, p, max(0.0, centre - half), min(1.0, centre + half))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value of paired binary outcomes: ``b`` pairs positive only in
    the first condition, ``c`` only in the second (pairs that agree carry no information).
    Under the null each discordant pair falls either way with probability 1/2, so the p-value
    is a two-sided binomial test of ``min(b, c)`` in ``b + c`` trials."""
    if b < 0 or c < 0:
        raise ValueError(f"need counts >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)
