"""How much traffic to simulate: replies per arm for a base rate and an effect, and back.

Two designs, matching the two tests of the comparison:

- **unpaired** (Fisher exact on two independent arms): power from the normal approximation
  with the continuity correction (Fleiss), which tracks the exact test far better than the
  plain normal formula at the small counts rare behaviours give;
- **paired** (exact McNemar on the discordant pairs of the same prefixes): power computed
  exactly, summing over the number of discordant pairs, under the assumption that the two
  arms misbehave independently given the prefix (what the simulator's personas do, and the
  conservative case when the arms are positively correlated).

The sample size is the smallest n whose power reaches the target (bisection on n); the
detectable ratio is the ratio whose power at n is the target (bisection on log ratio).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

MAX_N = 10**9


@dataclass(frozen=True)
class Design:
    """What a plan is for: baseline rate (a probability), alpha, target power, pairing."""

    base_rate: float
    alpha: float = 0.1
    power: float = 0.8
    paired: bool = False

    def check(self) -> None:
        """One-line ValueError naming the bad field."""
        if not 0 < self.base_rate < 1:
            raise ValueError(
                f"base rate must be in (0, 100000) per 100k (got {self.base_rate * 100_000:g})"
            )
        if not 0 < self.alpha < 1:
            raise ValueError(f"--alpha must be in (0, 1) (got {self.alpha})")
        if not 0 < self.power < 1:
            raise ValueError(f"--power must be in (0, 1) (got {self.power})")


def power_unpaired(n: int, p0: float, p1: float, alpha: float) -> float:
    """Power of the two-sided two-arm test at ``n`` replies per arm (continuity-corrected)."""
    if n <= 0 or p0 == p1:
        return alpha if p0 == p1 else 0.0
    z_a = float(stats.norm.ppf(1 - alpha / 2))
    d = abs(p1 - p0)
    pbar = (p0 + p1) / 2
    null_sd = math.sqrt(2 * pbar * (1 - pbar))
    alt_sd = math.sqrt(p0 * (1 - p0) + p1 * (1 - p1))
    # Reject when |p1_hat - p0_hat| - 1/n exceeds z_a * null_sd / sqrt(n) (Yates' correction).
    z = (math.sqrt(n) * (d - 1 / n) - z_a * null_sd) / alt_sd
    return float(stats.norm.cdf(z))


def power_paired(n: int, p0: float, p1: float, alpha: float) -> float:
    """Exact power of the two-sided exact McNemar test on ``n`` independent-arm pairs."""
    if n <= 0:
        return 0.0
    up = p1 * (1 - p0)  # only the candidate misbehaves on this prefix
    down = p0 * (1 - p1)  # only the baseline does
    psi = up + down
    if psi <= 0:
        return 0.0
    share = up / psi
    lo = int(stats.binom.ppf(1e-12, n, psi))
    hi = int(stats.binom.isf(1e-12, n, psi))
    m = np.arange(max(lo, 1), max(hi, 1) + 1)
    weight = stats.binom.pmf(m, n, psi)
    # c(m): the largest k with 2 * P(Bin(m, 1/2) <= k) < alpha; reject when min(b, m-b) <= c.
    c = stats.binom.ppf(alpha / 2, m, 0.5)
    c = np.where(stats.binom.cdf(c, m, 0.5) < alpha / 2, c, c - 1)
    reject = np.where(
        c >= 0,
        stats.binom.cdf(c, m, share) + stats.binom.sf(m - c - 1, m, share),
        0.0,
    )
    # Where the two tails would overlap (c >= m - c) every outcome rejects.
    reject = np.where(c >= m - c, 1.0, reject)
    return float(np.sum(weight * np.minimum(reject, 1.0)))


def power_at(n: int, design: Design, ratio: float) -> float:
    """Power at ``n`` per arm (pairs when paired) to detect ``ratio`` x the base rate."""
    p0 = design.base_rate
    p1 = min(p0 * ratio, 1.0)
    fn = power_paired if design.paired else power_unpaired
    return fn(n, p0, p1, design.alpha)


def n_per_arm(design: Design, ratio: float) -> int:
    """The smallest replies per arm (prefixes, when paired) reaching ``design.power``."""
    design.check()
    if not ratio > 0 or ratio == 1:
        raise ValueError(f"--ratio must be > 0 and not 1 (got {ratio})")
    if min(design.base_rate * ratio, 1.0) == design.base_rate:
        raise ValueError(f"--ratio {ratio} cannot be told apart at this base rate")
    lo, hi = 1, 2
    while power_at(hi, design, ratio) < design.power:
        lo, hi = hi, hi * 2
        if hi > MAX_N:
            raise ValueError(f"more than {MAX_N:,} replies per arm would be needed")
    while lo < hi:
        mid = (lo + hi) // 2
        if power_at(mid, design, ratio) >= design.power:
            hi = mid
        else:
            lo = mid + 1
    return hi


def detectable_ratio(n: int, design: Design, *, up: bool = True) -> float:
    """Smallest ratio above 1 (``up``) or largest below 1 detected with ``design.power`` at n.

    ``inf`` (up) or ``0.0`` (down) when no ratio reaches the power (too little traffic).
    """
    design.check()
    if n <= 0:
        raise ValueError(f"--n must be a positive number of replies (got {n})")
    if up:
        top = 1.0 / design.base_rate  # p1 = 1: the largest ratio there is
        if power_at(n, design, top) < design.power:
            return math.inf
        lo, hi = 0.0, math.log(top)
    else:
        if power_at(n, design, 1e-9) < design.power:
            return 0.0
        lo, hi = math.log(1e-9), 0.0
    for _ in range(60):
        mid = (lo + hi) / 2
        reached = power_at(n, design, math.exp(mid)) >= design.power
        # Going up, a larger ratio is easier; going down, a smaller one is.
        if reached == up:
            hi = mid
        else:
            lo = mid
    return math.exp(hi if up else lo)
