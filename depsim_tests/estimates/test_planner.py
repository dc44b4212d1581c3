"""The planner against Monte Carlo runs of the very tests the comparison applies."""

import json
import math

import numpy as np
import pytest
from scipy import stats

from depsim_assets.cli import main
from depsim_assets.estimates.planner import (
    Design,
    detectable_ratio,
    n_per_arm,
    power_at,
    power_paired,
    power_unpaired,
)
from depsim_assets.estimates.stats import mcnemar_exact

REPS = 1500  # Monte Carlo SE about 1 point at power 0.8


def _mc_power_unpaired(n, p0, p1, alpha, rng):
    """Share of simulated two-arm studies where Fisher's exact test rejects in the right way."""
    x1 = rng.binomial(n, p1, REPS)
    x0 = rng.binomial(n, p0, REPS)
    seen: dict[tuple[int, int], bool] = {}
    hits = 0
    for a, b in zip(x1.tolist(), x0.tolist(), strict=True):
        if (a, b) not in seen:
            p = stats.fisher_exact([[a, n - a], [b, n - b]]).pvalue
            seen[(a, b)] = p < alpha and (a > b) == (p1 > p0)
        hits += seen[(a, b)]
    return hits / REPS


def _mc_power_paired(n, p0, p1, alpha, rng):
    """Share of simulated paired studies (independent arms) where exact McNemar rejects."""
    cand = rng.random((REPS, n)) < p1
    base = rng.random((REPS, n)) < p0
    up = (cand & ~base).sum(axis=1)
    down = (base & ~cand).sum(axis=1)
    return float(
        np.mean([mcnemar_exact(int(u), int(d)) < alpha for u, d in zip(up, down, strict=True)])
    )


@pytest.mark.parametrize(
    "rate_per_100k,ratio,alpha,power",
    [(1000, 2.0, 0.1, 0.8), (4000, 0.25, 0.1, 0.8), (300, 3.0, 0.05, 0.9)],
)
def test_unpaired_plan_agrees_with_monte_carlo(rate_per_100k, ratio, alpha, power):
    design = Design(rate_per_100k / 100_000, alpha, power)
    n = n_per_arm(design, ratio)
    rng = np.random.default_rng(11)
    simulated = _mc_power_unpaired(n, design.base_rate, design.base_rate * ratio, alpha, rng)
    assert abs(simulated - power) <= 0.05, (n, simulated)
    # and the plan is tight: a much smaller study falls clearly short
    short = _mc_power_unpaired(int(n * 0.6), design.base_rate, design.base_rate * ratio, alpha, rng)
    assert short < power - 0.08


@pytest.mark.parametrize("rate_per_100k,ratio", [(2000, 2.0), (4000, 0.25)])
def test_paired_plan_agrees_with_monte_carlo(rate_per_100k, ratio):
    design = Design(rate_per_100k / 100_000, 0.1, 0.8, paired=True)
    n = n_per_arm(design, ratio)
    rng = np.random.default_rng(5)
    simulated = _mc_power_paired(n, design.base_rate, design.base_rate * ratio, 0.1, rng)
    assert abs(simulated - 0.8) <= 0.05, (n, simulated)


def test_unpaired_n_matches_the_fleiss_closed_form():
    # Fleiss (1981) continuity-corrected sample size, computed independently of the bisection.
    p0, p1, alpha, power = 0.01, 0.02, 0.1, 0.8
    za, zb = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    pbar = (p0 + p1) / 2
    d = p1 - p0
    n0 = (
        za * math.sqrt(2 * pbar * (1 - pbar)) + zb * math.sqrt(p0 * (1 - p0) + p1 * (1 - p1))
    ) ** 2 / d**2
    fleiss = n0 / 4 * (1 + math.sqrt(1 + 4 / (n0 * d))) ** 2
    assert n_per_arm(Design(p0, alpha, power), 2.0) == math.ceil(fleiss)


def test_paired_power_by_direct_double_sum():
    # Small n: sum over every (up, down) outcome of the trinomial, independently of the code's
    # sum over the discordant total.
    n, p0, p1, alpha = 40, 0.1, 0.3, 0.1
    up_p, down_p = p1 * (1 - p0), p0 * (1 - p1)
    total = 0.0
    for u in range(n + 1):
        for d in range(n + 1 - u):
            prob = (
                math.comb(n, u)
                * math.comb(n - u, d)
                * up_p**u
                * down_p**d
                * (1 - up_p - down_p) ** (n - u - d)
            )
            if mcnemar_exact(u, d) < alpha:
                total += prob
    assert power_paired(n, p0, p1, alpha) == pytest.approx(total, abs=1e-9)


def test_detectable_ratio_inverts_the_sample_size():
    design = Design(0.02, 0.1, 0.8)
    n = n_per_arm(design, 2.0)
    up = detectable_ratio(n, design, up=True)
    assert up == pytest.approx(2.0, rel=0.01)
    down = detectable_ratio(n, design, up=False)
    assert 0 < down < 1 and power_at(n, design, down) == pytest.approx(0.8, abs=0.01)
    assert detectable_ratio(2, Design(0.3, 0.1, 0.8), up=True) == math.inf  # even p1 = 1 is not


def test_power_grows_with_n_and_effect():
    assert power_unpaired(1000, 0.01, 0.03, 0.1) < power_unpaired(4000, 0.01, 0.03, 0.1)
    assert power_unpaired(2000, 0.01, 0.015, 0.1) < power_unpaired(2000, 0.01, 0.03, 0.1)


def test_cli_plan_json_and_errors(depsim_home, capsys):
    argv = ["plan", "--base-rate-per-100k", "1000", "--ratio", "2", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_per_arm"] == n_per_arm(Design(0.01, 0.1, 0.8), 2.0)
    assert out["achieved_power"] >= 0.8
    assert main([*argv, "--paired"]) == 0
    assert json.loads(capsys.readouterr().out)["paired"] is True
    assert main(["plan", "--n", "5000", "--base-rate-per-100k", "2000", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert rows[0]["min_ratio_up"] > 1 > rows[0]["max_ratio_down"] > 0
    for bad, needle in (
        (["plan", "--ratio", "2"], "give --base-rate-per-100k"),
        (["plan", "--base-rate-per-100k", "1000", "--ratio", "1"], "--ratio must be"),
        (["plan", "--base-rate-per-100k", "1000", "--ratio", "2", "--power", "1.5"], "--power"),
        (["plan", "--n", "100"], "no candidate registry"),
    ):
        assert main(bad) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("depsim: error:") and needle in err and "\n" not in err
