"""The small amount of statistics triage needs: stopping rules and exact binomial intervals."""

from __future__ import annotations

import math
from collections.abc import Callable


def _check_probability(name: str, value: float) -> None:
    if not 0.0 < value < 1.0 or math.isnan(value):
        raise ValueError(f"{name} must be between 0 and 1 (exclusive), got {value!r}")


def runs_for_confidence(confidence: float, max_failure_rate: float) -> int:
    """Consecutive passes needed to claim, at `confidence`, that the failure rate is below `max_failure_rate`.

    A test failing with probability p passes n runs in a row with probability (1-p)^n; n is the
    smallest count with (1-p)^n <= 1-C, i.e. ceil(ln(1-C) / ln(1-p)). 0.95 and 0.10 give 29.
    """
    _check_probability("confidence", confidence)
    _check_probability("max_failure_rate", max_failure_rate)
    exact = math.log(1.0 - confidence) / math.log(1.0 - max_failure_rate)
    return max(1, math.ceil(exact - 1e-9))  # 1e-9: a float that lands just above an integer


def failures_for_regression(confidence: float, flaky_rate: float) -> int:
    """Consecutive failures after which a flaky test failing at most `flaky_rate` of the time is implausible.

    Such a test fails k runs in a row with probability at most flaky_rate^k; k is the smallest count
    with flaky_rate^k <= 1-C. 0.95 and 0.5 give 5.
    """
    return runs_for_confidence(confidence, 1.0 - flaky_rate)


def rate_bound_after_passes(passes: int, confidence: float) -> float:
    """The failure rate that `passes` consecutive passes rule out at `confidence`: 1 - (1-C)^(1/n)."""
    if passes <= 0:
        return 1.0
    return float(1.0 - (1.0 - confidence) ** (1.0 / passes))


def order_independence_likelihood(failures_after: int, passes_alone: int) -> float:
    """How well "fails at random, regardless of order" explains r failures after a polluter and s passes alone.

    Under that explanation every run fails with the same probability q, so the observation has
    probability q^r (1-q)^s, largest at q = r/(r+s). Order dependence is accepted once even this
    most favourable q makes the observation rarer than 1-C.
    """
    r, s = failures_after, passes_alone
    if r <= 0 or s <= 0:
        return 1.0
    q = r / (r + s)
    return float(q**r * (1.0 - q) ** s)


def _binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return math.fsum(math.comb(n, i) * p**i * (1.0 - p) ** (n - i) for i in range(k + 1))


def _solve(target: float, function: Callable[[float], float], increasing: bool) -> float:
    """The p in [0, 1] where a monotone `function(p)` equals `target`, by bisection."""
    low, high = 0.0, 1.0
    for _ in range(80):
        middle = (low + high) / 2
        value = function(middle)
        if (value < target) == increasing:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def clopper_pearson(failures: int, runs: int, confidence: float) -> tuple[float, float]:
    """The exact (Clopper-Pearson) two-sided confidence interval of a failure rate."""
    _check_probability("confidence", confidence)
    if runs <= 0:
        return 0.0, 1.0
    if not 0 <= failures <= runs:
        raise ValueError(f"failures must be between 0 and runs ({runs}), got {failures}")
    alpha = 1.0 - confidence
    lower = 0.0
    if failures > 0:
        # P(X >= failures | p) = alpha/2, i.e. 1 - cdf(failures-1) rises with p.
        lower = _solve(alpha / 2, lambda p: 1.0 - _binomial_cdf(failures - 1, runs, p), increasing=True)
    upper = 1.0
    if failures < runs:
        # P(X <= failures | p) = alpha/2, falling with p.
        upper = _solve(alpha / 2, lambda p: _binomial_cdf(failures, runs, p), increasing=False)
    return lower, upper


def percent(value: float) -> str:
    """0.95 -> "95%", 0.999 -> "99.9%", 0.0312 -> "3.1%"."""
    text = f"{value * 100:.1f}".rstrip("0").rstrip(".")
    return f"{text}%"
