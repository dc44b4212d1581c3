"""Rates, intervals and comparisons, on counts only (no Dagster, no warehouse).

Rates are flagged / graded, reported per 100,000 replies. Intervals are Jeffreys (the
Beta(x + 1/2, n - x + 1/2) posterior quantiles, with the usual boundary convention: the lower
bound is 0 when x = 0 and the upper is 1 when x = n). Two arms are compared with the
two-sided Fisher exact test and a rate ratio with a log-scale (Katz) interval; a count of zero
gets 0.5 added to every cell of the ratio so it stays finite.

With several samples per prefix (``samples > 1``) the replies of one prefix are not
independent draws, so the counts alone overstate the evidence. Callers then pass the
per-category sums of squares and cross-products of the per-prefix counts
(:class:`ClusterSums`); the test becomes a prefix-clustered (sandwich) score test and the
intervals use the design effect those sums measure. docs/statistics.md says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from scipy import stats

PER = 100_000
CHANGE_RATIO = 1.5


def jeffreys_interval(
    flagged: float, graded: float, level: float = 0.95
) -> tuple[float, float]:
    """Jeffreys interval for a binomial proportion; ``(nan, nan)`` when nothing was graded.

    Counts may be effective (non-integer) counts, as :func:`effective_counts` gives them.
    """
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


# --- clustering by prefix -------------------------------------------------------------------


@dataclass(frozen=True)
class ArmSums:
    """One arm's per-prefix counts summarised: prefixes, totals and sums of squares.

    ``m`` prefixes; per prefix i, ``n_i`` graded replies and ``x_i`` flagged ones:
    ``flagged = sum x_i``, ``graded = sum n_i``, ``xx = sum x_i^2``, ``xn = sum x_i n_i``,
    ``nn = sum n_i^2``, ``max_n = max n_i``. SQL computes these with GROUP BY, so Python
    never sees a per-reply row.
    """

    m: int
    flagged: int
    graded: int
    xx: int
    xn: int
    nn: int
    max_n: int

    @property
    def clustered(self) -> bool:
        """Some prefix has more than one graded reply (``samples > 1``)."""
        return self.max_n > 1


@dataclass(frozen=True)
class ClusterSums:
    """Both arms' per-prefix counts on the same (paired) prefixes, summarised.

    ``cand`` and ``base`` as :class:`ArmSums`; the cross-products between the arms of the
    same prefix: ``xc_xb = sum xc_i xb_i``, ``xc_nb``, ``nc_xb``, ``nc_nb``.
    """

    cand: ArmSums
    base: ArmSums
    xc_xb: int
    xc_nb: int
    nc_xb: int
    nc_nb: int

    @property
    def clustered(self) -> bool:
        return self.cand.clustered or self.base.clustered

    def quadratic(self, w: tuple[Fraction, Fraction, Fraction, Fraction]) -> Fraction:
        """``sum_i (w . v_i)^2`` with ``v_i = (xc_i, nc_i, xb_i, nb_i)``, exactly."""
        c, b = self.cand, self.base
        s = (
            (c.xx, c.xn, self.xc_xb, self.xc_nb),
            (c.xn, c.nn, self.nc_xb, self.nc_nb),
            (self.xc_xb, self.nc_xb, b.xx, b.xn),
            (self.xc_nb, self.nc_nb, b.xn, b.nn),
        )
        return sum(
            (w[i] * s[i][j] * w[j] for i in range(4) for j in range(4)), start=Fraction(0)
        )


def design_effect(arm: ArmSums) -> float:
    """Variance of the pooled rate with prefixes as clusters over its binomial variance.

    The cluster-robust (ratio-estimator) variance ``m/(m-1) sum (x_i - r n_i)^2 / N^2``
    against ``r (1 - r) / N``; never below 1 (clustering cannot add information). NaN when
    it cannot be measured (no flag, every reply flagged, or a single prefix).
    """
    x, n, m = arm.flagged, arm.graded, arm.m
    if n <= 0 or m < 2 or x == 0 or x == n:
        return math.nan
    r = Fraction(x, n)
    # sum (x_i - r n_i)^2, exact on the integer sums so nothing cancels in floating point.
    resid = arm.xx - 2 * r * arm.xn + r * r * arm.nn
    deff = Fraction(m, m - 1) * resid / (n * r * (1 - r))
    return max(1.0, float(deff))


def effective_counts(arm: ArmSums) -> tuple[float, float]:
    """``(flagged, graded)`` divided by the design effect: what independent draws they're worth.

    Unclustered arms keep their counts. When the design effect cannot be measured (no flag
    or all flagged) each prefix counts as one draw: ``graded`` becomes the number of prefixes,
    the cautious choice, since a prefix's replies may all agree.
    """
    if not arm.clustered:
        return (float(arm.flagged), float(arm.graded))
    deff = design_effect(arm)
    if math.isnan(deff):
        scale = arm.m / arm.graded if arm.graded else 1.0
        return (arm.flagged * scale, float(arm.m))
    return (arm.flagged / deff, arm.graded / deff)


def rate_interval(arm: ArmSums, level: float = 0.95) -> tuple[float, float]:
    """Jeffreys interval of the arm's rate; on effective counts when prefixes are clustered."""
    x, n = effective_counts(arm)
    return jeffreys_interval(min(x, n), n, level)


def clustered_score_p(sums: ClusterSums) -> float:
    """Two-sided p of "same rate in both arms", prefixes as clusters (paired score test).

    The difference of the pooled rates ``D = Xc/Nc - Xb/Nb`` is the sum over prefixes of
    ``u_i = (xc_i - r0 nc_i)/Nc - (xb_i - r0 nb_i)/Nb`` with ``r0`` the rate of both arms
    together (the null). Its variance is estimated from the ``u_i`` themselves
    (``m/(m-1) sum u_i^2``, the sandwich of a GEE with prefix clusters), so correlation
    between the samples of a prefix, within an arm or across the arms, is accounted for;
    ``D / sqrt(var)`` is referred to the normal. 1.0 when nothing varies.
    """
    c, b, m = sums.cand, sums.base, sums.cand.m
    if c.graded <= 0 or b.graded <= 0 or m < 2:
        return math.nan
    r0 = Fraction(c.flagged + b.flagged, c.graded + b.graded)
    w = (Fraction(1, c.graded), -r0 / c.graded, Fraction(-1, b.graded), r0 / b.graded)
    var = Fraction(m, m - 1) * sums.quadratic(w)
    if var <= 0:
        return 1.0
    diff = Fraction(c.flagged, c.graded) - Fraction(b.flagged, b.graded)
    z = float(diff) / math.sqrt(float(var))
    return float(min(1.0, 2 * stats.norm.sf(abs(z))))


def clustered_ratio_interval(
    sums: ClusterSums, level: float = 0.95
) -> tuple[float, float, float]:
    """Rate ratio and its log-scale interval with the prefix-clustered (delta) variance.

    ``log(rc / rb)`` linearises to the sum of ``z_i = (xc_i - rc nc_i)/Xc - (xb_i - rb nb_i)/Xb``;
    its variance is ``m/(m-1) sum z_i^2``. With a zero count (or every reply flagged) the
    linearisation has no variance to measure: the Katz interval on the arms' effective counts
    is used instead, with its 0.5 correction.
    """
    c, b, m = sums.cand, sums.base, sums.cand.m
    if c.graded <= 0 or b.graded <= 0:
        return (math.nan, math.nan, math.nan)
    degenerate = min(c.flagged, b.flagged) == 0 or c.flagged == c.graded
    if degenerate or b.flagged == b.graded or m < 2:
        x1, n1 = effective_counts(c)
        x2, n2 = effective_counts(b)
        return rate_ratio(x1, n1, x2, n2, level)
    rc, rb = Fraction(c.flagged, c.graded), Fraction(b.flagged, b.graded)
    w = (
        Fraction(1, c.flagged),
        -rc / c.flagged,
        Fraction(-1, b.flagged),
        rb / b.flagged,
    )
    se = math.sqrt(float(Fraction(m, m - 1) * sums.quadratic(w)))
    ratio = float(rc / rb)
    z = float(stats.norm.ppf(1 - (1 - level) / 2))
    return (ratio, ratio * math.exp(-z * se), ratio * math.exp(z * se))


# --- two arms ---------------------------------------------------------------------------------


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
    flagged: float, graded: float, base_flagged: float, base_graded: float, level: float = 0.95
) -> tuple[float, float, float]:
    """Rate ratio and its Katz log-scale interval; 0.5 is added to all cells if one is zero.

    Hand-written: scipy's ``relative_risk`` gives the same interval (a test checks it) but
    takes integer counts only, so it can neither apply this correction nor take effective
    counts, and returns ``(nan, inf)`` on a zero count.
    """
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
    clusters: ClusterSums | None = None,
) -> Comparison:
    """p-value, rate ratio, and the change call: significant AND >= 1.5x either way.

    One reply per prefix (or no ``clusters``): Fisher exact p and the Katz interval on the
    counts. Several replies of a prefix (``clusters`` with a prefix of more than one graded
    reply): the prefix-clustered score test and ratio interval (:func:`clustered_score_p`,
    :func:`clustered_ratio_interval`).
    """
    if graded <= 0 or base_graded <= 0:
        ratio, low, high = rate_ratio(flagged, graded, base_flagged, base_graded, level)
        return Comparison(ratio, low, high, math.nan, False, "none")
    if clusters is not None and clusters.clustered:
        ratio, low, high = clustered_ratio_interval(clusters, level)
        p_value = clustered_score_p(clusters)
    else:
        ratio, low, high = rate_ratio(flagged, graded, base_flagged, base_graded, level)
        table = [[flagged, graded - flagged], [base_flagged, base_graded - base_flagged]]
        p_value = fisher_p(table)
    significant = p_value < alpha
    return Comparison(ratio, low, high, p_value, significant, change_call(ratio, significant))


def fisher_p(table: list[list[int]]) -> float:
    """Two-sided Fisher exact p of a 2x2 table (scipy)."""
    # scipy annotates the result as a bare tuple; it is a SignificanceResult with .pvalue.
    result: Any = stats.fisher_exact(table, alternative="two-sided")
    return float(result.pvalue)


def mcnemar_exact(up: int, down: int) -> float:
    """Two-sided exact McNemar p on discordant pairs (scipy's exact binomial test at 1/2).

    ``up``: pairs where only the candidate was flagged; ``down``: only the baseline. Under no
    difference each discordant pair is a fair coin; 1.0 when there is no discordant pair.
    """
    if up < 0 or down < 0:
        raise ValueError(f"discordant counts must be >= 0 (got {up}, {down})")
    if up + down == 0:
        return 1.0
    return float(stats.binomtest(up, up + down, 0.5).pvalue)


def bh_qvalues(p_values: list[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (scipy's ``false_discovery_control``).

    NaN inputs (a category nobody graded) stay NaN and do not count in m.
    """
    values = np.asarray(p_values, dtype=float)
    out = np.full(len(values), math.nan)
    finite = ~np.isnan(values)
    if finite.any():
        out[finite] = stats.false_discovery_control(values[finite], method="bh")
    return [float(q) for q in out]


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
