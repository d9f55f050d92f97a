"""The statistics of an evaluation: pure functions, standard library only.

- `wilson`: the Wilson score interval of a proportion (it stays inside [0, 1] and behaves at 0 and n
  successes, unlike the normal approximation).
- `mcnemar`: McNemar's exact test for paired binary outcomes (configuration A against B on the same
  tasks and repeats): only the discordant pairs count; two-sided p from the binomial distribution
  with p = 1/2.
"""

from __future__ import annotations

import math
from statistics import NormalDist

CONFIDENCE = 0.95


def wilson(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval for `successes` out of `n` trials; (0, 1) when n is 0."""
    if n == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar(only_a: int, only_b: int) -> float:
    """Two-sided exact p-value of McNemar's test: `only_a` pairs where only A resolved the task, `only_b` where
    only B did. 1.0 when there is no discordant pair."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail: float = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2**n
    return min(1.0, 2 * tail)
