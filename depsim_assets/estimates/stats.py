"""Rates, intervals and comparisons, on counts only (no Dagster, no warehouse).

Rates are flagged / graded, reported per 100,000 replies. Intervals are Jeffreys (the
Beta(x + 1/2, n - x + 1/2) posterior quantiles, with the usual boundary convention: the lower
bound is 0 when x = 0 and the upper is 1 when x = n). Two arms are compared with the
two-sided Fisher exact test and a rate ratio with a log-scale (Katz) interval; a count of zero
gets 0.5 added to every cell of the ratio so it stays finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

PER = 100_000
CHANGE_RATIO = 1.5


def jeffreys_interval(flagged: int, graded: int, level: float = 0.95) -> tuple[float, float]:
    """Jeffreys interval for a binomial proportion; ``(nan, nan)`` when nothing was graded."""
    if graded <= 0:
        return (math.nan, math.nan)
    if not 0 <= flagged <= graded:
        raise ValueError(f"flagged={flagged} must lie in [0, graded={graded}]")
    tail = (1 - level) / 2
    a, b = flagged + 0.5, graded - flagged + 0.5
    low = 0.0 if flagged == 0 else float(stats.beta.ppf(tail, a, b))
    high = 1.0 if flagged == graded else float(stats.beta.ppf(1 - tail, a, b))
    return (low, high)


def rate_per_100k(flagged: int, graded: int) -> float:
    """``flagged / graded`` per 100k replies (nan when nothing was graded)."""
    return flagged / graded * PER if graded > 0 else math.nan


@dataclass(frozen=True)
class Comparison:
    """A candidate arm against a baseline arm on one category."""

    rate_ratio: float
    ci_low_ratio: float
    ci_high_ratio: float
    p_value: float
    significant: bool
    change: str


def rate_ratio(
    flagged: int, graded: int, base_flagged: int, base_graded: int, level: float = 0.95
) -> tuple[float, float, float]:
    """Rate ratio and its Katz log-scale interval; 0.5 is added to all cells if one is zero."""
    if graded <= 0 or base_graded <= 0:
        return (math.nan, math.nan, math.nan)
    x1, n1, x2, n2 = float(flagged), float(graded), float(base_flagged), float(base_graded)
    if min(x1, x2) == 0 or x1 == n1 or x2 == n2:
        x1, n1, x2, n2 = x1 + 0.5, n1 + 1.0, x2 + 0.5, n2 + 1.0
    ratio = (x1 / n1) / (x2 / n2)
    se = math.sqrt(1 / x1 - 1 / n1 + 1 / x2 - 1 / n2)
    z = float(stats.norm.ppf(1 - (1 - level) / 2))
    return (ratio, ratio * math.exp(-z * se), ratio * math.exp(z * se))


def compare(
    flagged: int,
    graded: int,
    base_flagged: int,
    base_graded: int,
    *,
    alpha: float = 0.1,
    level: float = 0.95,
) -> Comparison:
    """Fisher exact p, rate ratio, and the change call: significant AND >= 1.5x either way."""
    ratio, low, high = rate_ratio(flagged, graded, base_flagged, base_graded, level)
    if graded <= 0 or base_graded <= 0:
        return Comparison(ratio, low, high, math.nan, False, "none")
    table = [[flagged, graded - flagged], [base_flagged, base_graded - base_flagged]]
    p_value = float(stats.fisher_exact(table, alternative="two-sided").pvalue)
    significant = p_value < alpha
    change = "none"
    if significant and ratio >= CHANGE_RATIO:
        change = "up"
    elif significant and ratio <= 1 / CHANGE_RATIO:
        change = "down"
    return Comparison(ratio, low, high, p_value, significant, change)


def mcnemar_exact(up: int, down: int) -> float:
    """Two-sided exact McNemar p on discordant pairs.

    ``up``: pairs where only the candidate was flagged; ``down``: only the baseline. Under no
    difference each discordant pair is a fair coin, so p is the two-sided binomial tail at 1/2
    (twice the smaller tail, capped at 1); 1.0 when there is no discordant pair.
    """
    if up < 0 or down < 0:
        raise ValueError(f"discordant counts must be >= 0 (got {up}, {down})")
    m = up + down
    if m == 0:
        return 1.0
    return float(min(1.0, 2.0 * stats.binom.cdf(min(up, down), m, 0.5)))


def bh_qvalues(p_values: list[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (q-values); NaN inputs stay NaN and do not count.

    q_(i) = min over j >= i of p_(j) * m / j on the sorted p-values, capped at 1.
    """
    finite = [(p, i) for i, p in enumerate(p_values) if not math.isnan(p)]
    out = [math.nan] * len(p_values)
    m = len(finite)
    running = 1.0
    for rank, (p, i) in reversed(list(enumerate(sorted(finite), start=1))):
        running = min(running, p * m / rank)
        out[i] = running
    return out


def change_call(ratio: float, significant: bool) -> str:
    """``up``/``down`` when significant AND at least 1.5x either way, else ``none``."""
    if significant and ratio >= CHANGE_RATIO:
        return "up"
    if significant and ratio <= 1 / CHANGE_RATIO:
        return "down"
    return "none"


def symmetric_error(a: float, b: float) -> float:
    """Symmetric multiplicative error ``max(a/b, b/a)`` (1 = equal); NaN if either is <= 0."""
    if not (a > 0 and b > 0):
        return math.nan
    return max(a / b, b / a)


def smoothed_rate(flagged: int, graded: int) -> float:
    """Jeffreys posterior mean ``(x + 1/2) / (n + 1)``: a rate that is never 0 or 1."""
    return (flagged + 0.5) / (graded + 1.0)
