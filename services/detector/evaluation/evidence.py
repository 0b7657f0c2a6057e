"""How detectable an incident is at all, from the generator's true parameters.

The evidence of a scenario on a metric is the expected log-likelihood ratio
(nats) of the true changed rate against the normal rate, summed over the
windows the incident touches on the affected slice: per window, the
Kullback-Leibler divergence of the changed distribution from the normal one,
with the expected counts the generator gives with and without the incident.
Ratios are binomial (trials: the denominator's expected count with the
incident), counts and sums Poisson (a sum: the count of what it adds up),
distinct users Poisson in the number of users. Nothing here looks at a
detector.

The same models give a window's *realised* log-likelihood ratio, from the
counts the generator actually drew (``window_llr``): what an oracle that knows
both rates and when the incident starts would add up. Its expectation is the
window's evidence, and it scatters around it (by about the square root of
twice the evidence, for a small change), so some scenarios above a threshold
on average fall short of it in the data drawn.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Protocol

RATIO_QUANTITIES: dict[str, tuple[str, str]] = {  # metric: (numerator, denominator)
    "conversion_rate": ("paid", "sessions"),
    "checkout_conversion": ("paid", "checkouts"),
    "payment_failure_rate": ("failed", "attempts"),
    "cancel_rate": ("cancelled", "paid"),
    "negative_feedback_rate": ("negative", "feedback"),
    "complaint_rate": ("complaints", "users"),
}
COUNT_QUANTITIES: dict[str, str] = {
    "order_count": "paid",
    "gmv": "paid",
    "active_users": "users",
    "churn_actions": "churn",
}
_EPS = 1e-12


class Expected(Protocol):
    def expected(
        self, slice_: Mapping[str, str], start: float, end: float, incidents: bool = True
    ) -> dict[str, float]: ...


def kl_binomial(n: float, p1: float, p0: float) -> float:
    """n trials' expected log-likelihood ratio of rate p1 against p0, when p1 is true."""
    p0 = min(max(p0, _EPS), 1 - _EPS)
    out = 0.0
    if p1 > 0:
        out += p1 * math.log(p1 / p0)
    if p1 < 1:
        out += (1 - p1) * math.log((1 - p1) / (1 - p0))
    return n * out


def kl_poisson(mean1: float, mean0: float) -> float:
    """Expected log-likelihood ratio of a Poisson mean1 against mean0, when mean1 is true."""
    mean0 = max(mean0, _EPS)
    head = mean1 * math.log(mean1 / mean0) if mean1 > 0 else 0.0
    return head - mean1 + mean0


def llr_binomial(x: float, n: float, p1: float, p0: float) -> float:
    """The log-likelihood ratio of rate p1 against p0 for x successes in n trials (a
    numerator above its denominator is taken as all successes; rates kept off 0 and 1)."""
    p0, p1 = (min(max(p, _EPS), 1 - _EPS) for p in (p0, p1))
    x = min(x, n)
    return x * math.log(p1 / p0) + (n - x) * math.log((1 - p1) / (1 - p0))


def llr_poisson(k: float, mean1: float, mean0: float) -> float:
    """The log-likelihood ratio of a Poisson mean1 against mean0 for a count k."""
    mean0, mean1 = max(mean0, _EPS), max(mean1, _EPS)
    return k * math.log(mean1 / mean0) - mean1 + mean0


def _with_attempts(q: dict[str, float]) -> dict[str, float]:
    return {**q, "attempts": q["paid"] + q["failed"]}


def _rates(
    metric: str, changed: dict[str, float], normal: dict[str, float]
) -> tuple[bool, float, float, float] | None:
    """The metric's model in a window: whether it is a ratio, its trials with the
    change, and its changed and normal rate (a ratio) or mean (a count); None for a
    ratio without trials."""
    changed, normal = _with_attempts(changed), _with_attempts(normal)
    if metric in RATIO_QUANTITIES:
        num, den = RATIO_QUANTITIES[metric]
        n1, n0 = changed[den], normal[den]
        if n1 <= 0 or n0 <= 0:
            return None
        return True, n1, min(1.0, changed[num] / n1), min(1.0, normal[num] / n0)
    if metric in COUNT_QUANTITIES:
        q = COUNT_QUANTITIES[metric]
        return False, 0.0, changed[q], normal[q]
    raise KeyError(f"no evidence model for {metric}")


def window_evidence(metric: str, changed: dict[str, float], normal: dict[str, float]) -> float:
    model = _rates(metric, changed, normal)
    if model is None:
        return 0.0
    ratio, trials, a, b = model
    return kl_binomial(trials, a, b) if ratio else kl_poisson(a, b)


def window_llr(
    metric: str, num: float, den: float, changed: dict[str, float], normal: dict[str, float]
) -> float:
    """A window's realised log-likelihood ratio of the changed rates against the normal
    ones: ``num`` of ``den`` for a ratio, the count ``num`` (for a sum, the count of
    what it adds up) otherwise."""
    model = _rates(metric, changed, normal)
    if model is None:
        return 0.0
    ratio, _, a, b = model
    if not ratio:
        return llr_poisson(num, a, b)
    return llr_binomial(num, den, a, b) if den > 0 else 0.0


def evidence(
    generator: Expected,
    slice_: Mapping[str, str],
    metric: str,
    start: float,
    end: float,
    window_s: int,
) -> float:
    """Nats over the windows [start, end) touches, on ``slice_``, for ``metric``."""
    total = 0.0
    w = math.floor(start / window_s) * window_s
    while w < end:
        changed = generator.expected(slice_, w, w + window_s, incidents=True)
        normal = generator.expected(slice_, w, w + window_s, incidents=False)
        total += window_evidence(metric, changed, normal)
        w += window_s
    return total
