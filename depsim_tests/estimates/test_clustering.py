"""Several samples per prefix: the pooled Fisher test calls changes that are not there.

Null comparisons are simulated with a per-prefix latent propensity (Beta, intra-prefix
correlation RHO): the k samples of a prefix share it, so they are far from independent.
The candidate and the baseline have the same rate, so every significant call is false. The
old test (Fisher exact on the pooled counts) is called significant far more often than
alpha; the prefix-clustered test of ``stats.compare`` at about alpha. The tolerance is the
simulations' own binomial noise: alpha must lie in the 99.9% Clopper-Pearson interval of
the observed rate (N_SIM simulations: about +-0.023 around 0.1).
"""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from depsim_assets.estimates.compute import build_comparison, frame_relation, paired_sums
from depsim_assets.estimates.stats import (
    ArmSums,
    ClusterSums,
    compare,
    jeffreys_interval,
    rate_interval,
)

ALPHA = 0.1
N_SIM = 2000
PREFIXES = 400
RATE = 0.03
RHO = 0.5  # intra-prefix correlation of the flags: strong, as when a prompt invites a behaviour


def _arm(x: np.ndarray, n: np.ndarray) -> ArmSums:
    return ArmSums(
        m=len(x),
        flagged=int(x.sum()),
        graded=int(n.sum()),
        xx=int((x * x).sum()),
        xn=int((x * n).sum()),
        nn=int((n * n).sum()),
        max_n=int(n.max()),
    )


def sums_of(xc, nc, xb, nb) -> ClusterSums:
    """What the paired SQL computes, from per-prefix counts (checked equal below)."""
    return ClusterSums(
        cand=_arm(xc, nc),
        base=_arm(xb, nb),
        xc_xb=int((xc * xb).sum()),
        xc_nb=int((xc * nb).sum()),
        nc_xb=int((nc * xb).sum()),
        nc_nb=int((nc * nb).sum()),
    )


def _null_draws(rng, k_cand: int, k_base: int, shared: bool):
    """Per-prefix flag counts of both arms at the same rate; ``shared``: one propensity per
    prefix for both arms (the prefix drives both models), else one per arm."""
    a, b = RATE * (1 / RHO - 1), (1 - RATE) * (1 / RHO - 1)
    pc = rng.beta(a, b, PREFIXES)
    pb = pc if shared else rng.beta(a, b, PREFIXES)
    nc, nb = np.full(PREFIXES, k_cand), np.full(PREFIXES, k_base)
    return rng.binomial(k_cand, pc), nc, rng.binomial(k_base, pb), nb


def simulate(
    k_cand: int,
    k_base: int,
    *,
    shared: bool,
    seed: int,
    old_test: bool = True,
    intervals: bool = True,
) -> dict[str, float]:
    """Shares of N_SIM null comparisons called significant (old: pooled Fisher; new: the
    clustered test) and the coverage of the candidate's rate interval (optional parts off
    to keep the suite fast)."""
    rng = np.random.default_rng(seed)
    old = new = new_change = covered_old = covered_new = 0
    for _ in range(N_SIM):
        xc, nc, xb, nb = _null_draws(rng, k_cand, k_base, shared)
        sums = sums_of(xc, nc, xb, nb)
        x, n, bx, bn = sums.cand.flagged, sums.cand.graded, sums.base.flagged, sums.base.graded
        if old_test:  # no clusters: Fisher on the pooled counts, as before the fix
            old += compare(x, n, bx, bn, alpha=ALPHA).significant
        clustered = compare(x, n, bx, bn, alpha=ALPHA, clusters=sums)
        new += clustered.significant
        new_change += clustered.change != "none"
        if not intervals:
            continue
        low, high = jeffreys_interval(x, n)
        covered_old += low <= RATE <= high
        low, high = rate_interval(sums.cand)
        covered_new += low <= RATE <= high
    return {
        "old": old / N_SIM,
        "new": new / N_SIM,
        "new_change": new_change / N_SIM,
        "coverage_old": covered_old / N_SIM,
        "coverage_new": covered_new / N_SIM,
        "old_count": old,
        "new_count": new,
    }


def _ci(count: int) -> tuple[float, float]:
    ci = stats.binomtest(count, N_SIM, ALPHA).proportion_ci(confidence_level=0.999)
    return (ci.low, ci.high)


def test_k4_correlated_samples_false_change_rate_old_above_alpha_new_at_alpha():
    # k = 4 in both arms, each arm's samples of a prefix sharing that arm's propensity.
    out = simulate(4, 4, shared=False, seed=11)
    print(f"k=4 null, {N_SIM} simulations: {out}")
    low, high = _ci(out["new_count"])
    assert low <= ALPHA <= high, out
    old_low, _ = _ci(out["old_count"])
    assert old_low > 2 * ALPHA, out  # clearly above: more than twice the nominal rate
    assert out["new_change"] <= out["new"]  # a change call needs significance too
    # The rate interval: Jeffreys on pooled counts misses the true rate far more than 5%;
    # on the effective counts it is close to its nominal 95%.
    assert out["coverage_old"] < 0.85, out
    assert 0.92 <= out["coverage_new"] <= 0.975, out


def test_shared_propensity_and_unequal_k_stay_at_alpha():
    # The prefix drives both arms (paired): pooled Fisher turns conservative (it also ignores
    # the pairing); the paired clustered test still holds alpha. Measured: old 0.02, new 0.09.
    shared = simulate(4, 4, shared=True, seed=12, intervals=False)
    print(f"k=4 shared propensity: {shared}")
    low, high = _ci(shared["new_count"])
    assert low <= ALPHA <= high, shared
    assert shared["old"] < ALPHA
    # Four samples of the candidate against one of the baseline (a production-like arm).
    mixed = simulate(4, 1, shared=False, seed=13, old_test=False, intervals=False)
    print(f"k=4 vs k=1: {mixed}")
    low, high = _ci(mixed["new_count"])
    assert low <= ALPHA <= high, mixed


def test_one_sample_per_prefix_is_the_fisher_test_unchanged():
    rng = np.random.default_rng(3)
    xc, nc, xb, nb = _null_draws(rng, 1, 1, shared=False)
    xc[:12] = 1  # a real difference, so p is not 1
    sums = sums_of(xc, nc, xb, nb)
    assert not sums.clustered
    x, n, bx, bn = sums.cand.flagged, sums.cand.graded, sums.base.flagged, sums.base.graded
    with_sums = compare(x, n, bx, bn, clusters=sums)
    assert with_sums == compare(x, n, bx, bn)
    fisher = stats.fisher_exact([[x, n - x], [bx, bn - bx]]).pvalue
    assert with_sums.p_value == pytest.approx(fisher, rel=1e-12)
    assert rate_interval(sums.cand) == jeffreys_interval(x, n)


def _frame(xc, xb, k_cand, k_base) -> pd.DataFrame:
    """Grade rows of both arms whose per-prefix flag counts are ``xc`` and ``xb``."""
    rows = []
    for arm, counts, k in (("cand", xc, k_cand), ("base", xb, k_base)):
        for i, flagged in enumerate(counts):
            for s in range(k):
                rows.append(
                    {
                        "candidate": arm,
                        "traffic_date": "2026-11-01",
                        "conversation_id": f"c{i}",
                        "sample_index": s,
                        "category": "hate",
                        "status": "scored",
                        "flagged": s < flagged,
                        "taxonomy_version": "v1",
                        "judge_prompt_version": "p1",
                    }
                )
    return pd.DataFrame(rows)


def test_sql_cluster_sums_equal_the_per_prefix_arrays_and_the_comparison_uses_them():
    rng = np.random.default_rng(7)
    xc, nc, xb, nb = _null_draws(rng, 4, 2, shared=False)
    frame = _frame(xc, xb, 4, 2)
    with frame_relation(frame) as (conn, relation):
        row = paired_sums(conn, relation, baseline="base", candidates=["cand"]).loc[
            ("cand", "hate")
        ]
    expected = sums_of(xc, nc, xb, nb)
    from depsim_assets.estimates.compute import cluster_sums

    assert cluster_sums(row) == expected
    out = build_comparison(frame, [("hate", "disallowed_content")], baseline="base")
    got = out.iloc[0]
    clustered = compare(
        expected.cand.flagged,
        expected.cand.graded,
        expected.base.flagged,
        expected.base.graded,
        clusters=expected,
    )
    assert got["p_value"] == pytest.approx(clustered.p_value, rel=1e-12)
    assert got["ci_low_ratio"] == pytest.approx(clustered.ci_low_ratio, rel=1e-12)
    low, _ = rate_interval(expected.cand)
    assert got["ci_low_per_100k"] == pytest.approx(low * 100_000, rel=1e-12)
    pooled = stats.fisher_exact(
        [
            [expected.cand.flagged, expected.cand.graded - expected.cand.flagged],
            [expected.base.flagged, expected.base.graded - expected.base.flagged],
        ]
    ).pvalue
    assert got["p_value"] != pytest.approx(pooled, rel=1e-3)  # not the pooled Fisher p


def test_clustered_score_statistic_against_its_definition():
    # sum_i u_i^2 from the sums of squares equals the sum over prefixes computed directly.
    rng = np.random.default_rng(9)
    xc, nc, xb, nb = _null_draws(rng, 4, 3, shared=True)
    sums = sums_of(xc, nc, xb, nb)
    r0 = (xc.sum() + xb.sum()) / (nc.sum() + nb.sum())
    u = (xc - r0 * nc) / nc.sum() - (xb - r0 * nb) / nb.sum()
    var = (u**2).sum() * PREFIXES / (PREFIXES - 1)
    z = (xc.sum() / nc.sum() - xb.sum() / nb.sum()) / math.sqrt(var)
    p = compare(
        sums.cand.flagged, sums.cand.graded, sums.base.flagged, sums.base.graded, clusters=sums
    ).p_value
    assert p == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-9)
    # The design effect: cluster-robust variance of the rate over its binomial variance.
    r = xc.sum() / nc.sum()
    robust = ((xc - r * nc) ** 2).sum() * PREFIXES / (PREFIXES - 1) / nc.sum() ** 2
    from depsim_assets.estimates.stats import design_effect

    assert design_effect(sums.cand) == pytest.approx(robust / (r * (1 - r) / nc.sum()))


def test_no_flag_at_all_counts_each_prefix_once():
    zeros = np.zeros(50, dtype=int)
    sums = sums_of(zeros, np.full(50, 4), zeros, np.full(50, 4))
    # No variance to measure: the interval is that of 50 independent prefixes, not 200 replies.
    assert rate_interval(sums.cand) == jeffreys_interval(0, 50)
    result = compare(0, 200, 0, 200, clusters=sums)
    assert result.p_value == 1.0 and result.change == "none"


def test_partition_rates_interval_uses_the_design_effect_of_repeated_samples():
    from depsim_assets.estimates.compute import rates_from_grades
    from depsim_assets.estimates.stats import design_effect, effective_counts

    # 100 prefixes x 4 samples; the samples of a prefix always agree: 10 prefixes flagged.
    xc = np.array([4] * 10 + [0] * 90)
    frame = _frame(xc, xc, 4, 4)
    rates = rates_from_grades(frame[frame["candidate"] == "cand"], [("hate", "x")])
    row = rates.iloc[0]
    assert (row["graded"], row["flagged"]) == (400, 40)
    arm = _arm(xc, np.full(100, 4))
    # Identical samples: the design effect is the cluster size (x 100/99 for the estimate).
    assert design_effect(arm) == pytest.approx(4 * 100 / 99)
    x_eff, n_eff = effective_counts(arm)
    low, high = jeffreys_interval(x_eff, n_eff)
    assert row["ci_low_per_100k"] == pytest.approx(low * 100_000)
    assert row["ci_high_per_100k"] == pytest.approx(high * 100_000)
    pooled_low, pooled_high = jeffreys_interval(40, 400)
    assert high - low > 1.9 * (pooled_high - pooled_low)  # about twice as wide (sqrt 4)
