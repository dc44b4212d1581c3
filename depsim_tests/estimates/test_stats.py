"""Statistics checked against independent computations (integration, enumeration, algebra)."""

import math

import pytest
from scipy import integrate, special

from depsim_assets.estimates.stats import compare, jeffreys_interval, rate_per_100k, rate_ratio


def _beta_mass(lo: float, hi: float, a: float, b: float) -> float:
    # Integrate the Beta density in log space, on a window that holds all the mass that matters,
    # so quad does not miss a narrow peak (n in the thousands).
    mode = (a - 0.5) / (a + b - 1)
    sd = math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    lo, hi = max(lo, mode - 12 * sd, 0.0), min(hi, mode + 12 * sd, 1.0)
    if hi <= lo:
        return 0.0
    log_norm = special.betaln(a, b)

    def density(p):
        return math.exp((a - 1) * math.log(p) + (b - 1) * math.log1p(-p) - log_norm)

    value, _ = integrate.quad(density, lo, hi, limit=400, epsabs=1e-10)
    return value


@pytest.mark.parametrize("x,n", [(3, 40), (17, 1200), (1, 5), (250, 600)])
def test_jeffreys_bounds_cut_equal_tails_of_the_posterior(x, n):
    low, high = jeffreys_interval(x, n, 0.95)
    a, b = x + 0.5, n - x + 0.5
    assert _beta_mass(0, low, a, b) == pytest.approx(0.025, abs=1e-4)
    assert _beta_mass(high, 1, a, b) == pytest.approx(0.025, abs=1e-4)


def test_jeffreys_boundaries_and_empty():
    low, high = jeffreys_interval(0, 100)
    assert low == 0.0 and 0 < high < 0.05
    low, high = jeffreys_interval(100, 100)
    assert high == 1.0 and low > 0.95
    assert all(math.isnan(v) for v in jeffreys_interval(0, 0))
    with pytest.raises(ValueError):
        jeffreys_interval(5, 3)


def test_rate_per_100k():
    assert rate_per_100k(3, 1000) == pytest.approx(300.0)
    assert math.isnan(rate_per_100k(0, 0))


def _fisher_two_sided(a, b, c, d):
    """Sum of hypergeometric probabilities no larger than the observed one (by enumeration)."""
    row1, col1, n = a + b, a + c, a + b + c + d

    def prob(k):
        return math.comb(col1, k) * math.comb(n - col1, row1 - k) / math.comb(n, row1)

    observed = prob(a)
    lo, hi = max(0, row1 - (n - col1)), min(row1, col1)
    return sum(prob(k) for k in range(lo, hi + 1) if prob(k) <= observed * (1 + 1e-7))


@pytest.mark.parametrize("x,n,bx,bn", [(12, 300, 4, 300), (0, 50, 3, 60), (7, 20, 7, 20)])
def test_fisher_p_matches_enumeration(x, n, bx, bn):
    result = compare(x, n, bx, bn)
    assert result.p_value == pytest.approx(_fisher_two_sided(x, n - x, bx, bn - bx), rel=1e-6)


def test_rate_ratio_katz_interval_closed_form():
    ratio, low, high = rate_ratio(30, 1000, 10, 1000)
    assert ratio == pytest.approx(3.0)
    se = math.sqrt(1 / 30 - 1 / 1000 + 1 / 10 - 1 / 1000)
    assert low == pytest.approx(3.0 * math.exp(-1.959964 * se), rel=1e-5)
    assert high == pytest.approx(3.0 * math.exp(1.959964 * se), rel=1e-5)


def test_rate_ratio_zero_count_stays_finite():
    ratio, low, high = rate_ratio(5, 100, 0, 100)
    assert ratio == pytest.approx((5.5 / 101) / (0.5 / 101))
    assert 0 < low < ratio < high < math.inf


def test_change_needs_significance_and_size():
    assert compare(60, 1000, 20, 1000).change == "up"
    assert compare(20, 1000, 60, 1000).change == "down"
    # significant but small: a 1.2x change on huge counts is not a >= 1.5x change
    small = compare(12000, 100000, 10000, 100000)
    assert small.significant and small.change == "none"
    # big ratio, tiny counts: not significant
    tiny = compare(2, 100, 1, 100)
    assert not tiny.significant and tiny.change == "none"


def test_alpha_moves_the_call():
    loose = compare(20, 1000, 8, 1000, alpha=0.1)
    strict = compare(20, 1000, 8, 1000, alpha=0.01)
    assert loose.p_value == strict.p_value
    assert loose.significant and not strict.significant


# --- McNemar, BH, smoothing: against scipy's own functions and hand enumeration -------------


def _binom_two_sided_by_enumeration(k: int, m: int) -> float:
    """Sum of Binomial(m, 1/2) probabilities no larger than that of k (the exact test)."""
    probs = [math.comb(m, i) / 2**m for i in range(m + 1)]
    return min(1.0, sum(p for p in probs if p <= probs[k] * (1 + 1e-9)))


@pytest.mark.parametrize("up,down", [(0, 0), (0, 1), (1, 0), (0, 7), (3, 12), (25, 20), (9, 9)])
def test_mcnemar_exact_matches_scipy_binomtest_and_enumeration(up, down):
    from scipy.stats import binomtest

    from depsim_assets.estimates.stats import mcnemar_exact

    p = mcnemar_exact(up, down)
    if up + down == 0:
        assert p == 1.0
        return
    assert p == pytest.approx(binomtest(up, up + down, 0.5).pvalue, rel=1e-9)
    assert p == pytest.approx(_binom_two_sided_by_enumeration(up, up + down), rel=1e-9)


def test_mcnemar_closed_form_tiny():
    from depsim_assets.estimates.stats import mcnemar_exact

    # 0 vs 5 discordant: 2 * (1/2)^5
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)
    assert mcnemar_exact(5, 0) == pytest.approx(2 / 32)
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


def test_bh_qvalues_match_scipy_and_hand_computation():
    from scipy.stats import false_discovery_control

    from depsim_assets.estimates.stats import bh_qvalues

    ps = [0.01, 0.04, 0.03, 0.2, 0.5, 0.001]
    q = bh_qvalues(ps)
    assert q == pytest.approx(list(false_discovery_control(ps, method="bh")))
    # by hand: sorted 0.001,0.01,0.03,0.04,0.2,0.5 -> p*m/rank then running min from the top
    assert q[5] == pytest.approx(0.006)
    assert q[0] == pytest.approx(0.03)
    assert q[2] == pytest.approx(0.06) and q[1] == pytest.approx(0.06)
    assert q[4] == pytest.approx(0.5)


def test_bh_ignores_nan_and_keeps_it():
    from depsim_assets.estimates.stats import bh_qvalues

    q = bh_qvalues([0.02, math.nan, 0.04])
    assert math.isnan(q[1])
    assert q[0] == pytest.approx(0.04) and q[2] == pytest.approx(0.04)  # m = 2, not 3
    assert bh_qvalues([]) == []


def test_symmetric_error_and_smoothing():
    from depsim_assets.estimates.stats import smoothed_rate, symmetric_error

    assert symmetric_error(2.0, 1.0) == symmetric_error(1.0, 2.0) == 2.0
    assert math.isnan(symmetric_error(0.0, 1.0))
    assert smoothed_rate(0, 99) == pytest.approx(0.005)


def test_katz_interval_is_scipys_where_scipy_applies_and_scipy_cannot_take_the_correction():
    from scipy.stats.contingency import relative_risk

    for x, n, bx, bn in ((30, 1000, 10, 1000), (7, 120, 19, 300), (250, 600, 1, 5)):
        ours = rate_ratio(x, n, bx, bn)
        theirs = relative_risk(x, n, bx, bn)
        ci = theirs.confidence_interval(0.95)
        assert ours == pytest.approx((theirs.relative_risk, ci.low, ci.high), rel=1e-9)
    # Why the hand-written formula stays: a zero count gives scipy no finite interval, and the
    # 0.5 correction (or an effective, clustered count) is not an integer scipy accepts.
    zero = relative_risk(5, 100, 0, 100).confidence_interval(0.95)
    assert math.isinf(zero.high) and all(math.isfinite(v) for v in rate_ratio(5, 100, 0, 100))
    with pytest.raises(TypeError):
        relative_risk(5.5, 101, 0.5, 101)  # type: ignore[arg-type]
