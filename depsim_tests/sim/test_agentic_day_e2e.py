"""The agentic day through the whole graph (traffic, the replay loop with the sim tool
simulator, the judge reading tool traces, the comparison), with the simulator over HTTP:
the regressed persona's raised tool behaviours come out ``up`` and significant, the
unchanged ones do not, and the recovered rates sit near planted rate x judge recall."""

from __future__ import annotations

import duckdb
import pytest
from scipy.stats import beta

from depsim_assets import config, runs
from depsim_assets.registry import Registry, save_registry
from depsim_assets.sim.agentic import LOOP_RATE, TOOL_BEHAVIOURS, TOOL_RAISED, TOOL_RATES
from depsim_demo.registry import SIM_CANDIDATES
from depsim_demo.synth import write_agentic_day

pytestmark = pytest.mark.e2e

DAY = "2026-11-05"
N = 800
BASELINE, REGRESSED = "sim-production", "sim-candidate-regressed"


def test_agentic_day_regressed_vs_production(depsim_home, instance):
    write_agentic_day(config.log_root(), DAY, n=N, seed=7)
    chosen = [c for c in SIM_CANDIDATES if c.name in (BASELINE, REGRESSED)]
    registry = Registry(baseline=BASELINE, candidates=chosen)
    save_registry(registry)
    runs.ensure_candidate_partitions(instance, registry.names())
    runs.execute(runs.plan_graph([DAY], registry.names(), sample_size=N), instance)
    with duckdb.connect(str(config.warehouse_path()), read_only=True) as conn:
        status = dict(conn.execute(
            "SELECT status, count(*) FROM candidate_completions WHERE candidate = ? "
            "GROUP BY 1", [REGRESSED]).fetchall())
        steps = conn.execute(
            "SELECT avg(steps), avg(tool_calls) FROM candidate_completions "
            "WHERE candidate = ?", [REGRESSED]).fetchone()
        rows = conn.execute(
            "SELECT category, n_graded, n_flagged, baseline_n_flagged, rate_ratio, p_value, "
            "change FROM candidate_comparison WHERE candidate = ? AND baseline = ?",
            [REGRESSED, BASELINE]).fetchall()
    by_category = {r[0]: r[1:] for r in rows}
    report = {c: by_category[c] for c in TOOL_BEHAVIOURS}
    print(f"\nn={N} status={status} steps/turn={steps[0]:.2f} calls/turn={steps[1]:.2f}")
    for category, values in report.items():
        print(category, values)
    assert status.get("ok", 0) > 0.9 * N
    assert 0 < status.get("step_limit", 0) < 3 * LOOP_RATE * N  # the loop's limit exercised
    assert 1.5 < steps[0] < 4
    for category in TOOL_BEHAVIOURS:
        graded, flagged, base_flagged, ratio, p_value, change = by_category[category]
        assert graded > 0.95 * N
        if category in TOOL_RAISED:
            assert change == "up" and p_value < 0.1, (category, by_category[category])
        else:
            assert change == "none", (category, by_category[category])
        # Recovered rate: its 99% Jeffreys interval meets planted (per turn) x the judge's
        # recall, measured in-process between 0.6 and 0.95 (docs/agentic.md).
        planted = TOOL_RATES[REGRESSED][category] * (1 - LOOP_RATE)
        if category == "unapproved_destructive_actions":
            planted *= 0.94  # turns offering a deletion nobody asked for
        low, high = beta.ppf([0.005, 0.995], flagged + 0.5, graded - flagged + 0.5)
        assert low <= 0.95 * planted and 0.6 * planted <= high, (category, flagged, planted)
