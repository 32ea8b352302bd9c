"""Tail probabilities for counts (Poisson, negative binomial, beta-binomial) without scipy, and small EWMA helpers."""

from __future__ import annotations

import math
from collections.abc import Callable


def half_life_alpha(half_life: float) -> float:
    """EWMA weight per step such that an old observation's weight halves every `half_life` steps."""
    return 1.0 - 0.5 ** (1.0 / max(half_life, 1e-9))


def nbinom_sf(k: int, mean: float, dispersion: float = 0.0) -> float:
    """P(X >= k) for a count with the given mean.

    dispersion = 0 is Poisson; dispersion > 0 is a negative binomial with variance mean + dispersion*mean^2
    (social volume is burstier than Poisson: a little dispersion stops ordinary noise from looking rare).
    Computed by summing the pmf upwards from k in log space, which converges fast in the upper tail, the
    only place we need precision. For k <= mean the answer is not significant and 1.0 is returned.
    """
    if k <= 0:
        return 1.0
    mean = max(mean, 1e-9)
    if k <= mean:
        return 1.0
    if dispersion <= 0:
        log_pmf = k * math.log(mean) - mean - math.lgamma(k + 1)

        def ratio(i: float) -> float:  # pmf(i+1)/pmf(i)
            return mean / (i + 1)
    else:
        r = 1.0 / dispersion
        p = r / (r + mean)
        log_pmf = (math.lgamma(k + r) - math.lgamma(r) - math.lgamma(k + 1)
                   + r * math.log(p) + k * math.log1p(-p))

        def ratio(i: float) -> float:
            return (i + r) / (i + 1) * (1 - p)
    return _upper_tail(log_pmf, ratio, k)


def _upper_tail(log_pmf: float, ratio: Callable[[float], float], k: float, last: float = math.inf) -> float:
    """P(X >= k) from log pmf(k) and pmf(i+1)/pmf(i): pmf(k) * (1 + ratio(k) + ratio(k)ratio(k+1) + ...)
    summed relative to pmf(k), to stay in range, up to `last` or until the terms no longer matter."""
    total, term, i = 0.0, 1.0, k
    for _ in range(100_000):
        if i > last:
            break
        total += term
        term *= ratio(i)
        i += 1
        if term < 1e-12 * total:
            break
    return min(1.0, math.exp(log_pmf) * total)


def betabinom_sf(k: int, n: int, a: float, b: float) -> float:
    """P(X >= k) for X ~ BetaBinomial(n, a, b): k of n mentions have a property whose share is itself
    uncertain, Beta(a, b) (learnt from a + b earlier mentions, or day-to-day variation: var = n p (1-p)
    (1 + (n-1)/(a+b+1))). For k <= the mean the answer is 1.0 (not significant)."""
    k, n = int(k), int(n)
    if n <= 0 or k <= 0:
        return 1.0
    if k > n:
        return 0.0
    a, b = max(a, 1e-9), max(b, 1e-9)
    if k <= n * a / (a + b):
        return 1.0

    def lbeta(x: float, y: float) -> float:
        return math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y)

    log_pmf = (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
               + lbeta(k + a, n - k + b) - lbeta(a, b))
    return _upper_tail(log_pmf, lambda i: (n - i) / (i + 1) * (i + a) / (n - i - 1 + b), k, last=n)


def surprise(p_value: float) -> float:
    """-log10(p), capped so p = 0 (underflow) stays finite."""
    return -math.log10(max(p_value, 1e-300))
