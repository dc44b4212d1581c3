"""Fault injection: deterministic plans, and a partition that survives them."""

import json
import urllib.request

import duckdb
import pytest

from depsim_assets import config, runs
from depsim_assets.registry import Candidate, Registry, save_registry
from depsim_assets.sim import SimServer
from depsim_assets.sim.faults import FaultPlan
from depsim_assets.traffic.synth import write_demo_log


def test_spec_parses_and_rejects_nonsense():
    plan = FaultPlan.parse("429=0.2,retry_after=1,500=0.05,hang=0.02,models=a+b,seed=3")
    assert (plan.rate_429, plan.rate_500, plan.rate_hang) == (0.2, 0.05, 0.02)
    assert plan.models == ("a", "b") and plan.seed == 3
    with pytest.raises(ValueError, match="expected"):
        FaultPlan.parse("teapot=0.5")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        FaultPlan.parse("429=1.5")


def test_decisions_are_deterministic_and_retries_get_fresh_draws():
    bodies = [f'{{"i": {i}}}'.encode() for i in range(2000)]
    first = [FaultPlan(rate_429=0.2, seed=1).decide("m", b)[0] for b in bodies]
    plan = FaultPlan(rate_429=0.2, seed=1)
    again = [plan.decide("m", b)[0] for b in bodies]
    assert first == again
    share = first.count("429") / len(first)
    assert 0.17 < share < 0.23
    # the same body retried is drawn again: not stuck on its first fault
    retried = [plan.decide("m", bodies[0])[0] for _ in range(50)]
    assert None in retried
    assert FaultPlan(rate_429=1.0, models=("x",)).decide("m", b"{}") == (None, 0.0)


@pytest.mark.e2e
def test_partition_completes_under_faults(depsim_home, instance, monkeypatch):
    """20% 429s (Retry-After 1 s), 5% 500s, 2% hung, 2% malformed judge output."""
    plan = FaultPlan(rate_429=0.2, retry_after=1, rate_500=0.05, rate_hang=0.02, hang_s=4,
                     rate_malformed=0.02, seed=11)
    day, sample = "2026-11-01", 150
    with SimServer(faults=plan) as server:
        monkeypatch.setenv("DEPSIM_JUDGE_BASE_URL", server.base_url)
        write_demo_log(config.log_root(), [day], per_day=300, seed=5)
        save_registry(Registry(baseline="flaky", candidates=[Candidate(
            name="flaky", base_url=server.base_url, model="sim-candidate-regressed",
            samples=2, max_concurrency=32, timeout_s=1.5, max_retries=6)]))
        runs.ensure_candidate_partitions(instance, ["flaky"])
        plan_runs = [r for r in runs.plan_graph([day], ["flaky"], sample_size=sample)
                     if r.label.startswith(("traffic", "flaky"))]
        runs.execute(plan_runs, instance)
        with urllib.request.urlopen(server.base_url + "/sim/stats", timeout=10) as resp:
            served = json.load(resp)["faults"]
        with duckdb.connect(str(config.warehouse_path()), read_only=True) as conn:
            per_prefix = conn.execute(
                "SELECT count(*) FROM conversation_prefixes p LEFT JOIN candidate_completions c "
                "ON c.conversation_id = p.conversation_id AND c.candidate = 'flaky' "
                "GROUP BY p.conversation_id").fetchall()
            status = dict(conn.execute("SELECT status, count(*) FROM candidate_completions "
                                       "WHERE candidate = 'flaky' GROUP BY 1").fetchall())
            grades = conn.execute(
                "SELECT count(*) FILTER (status = 'scored'), count(*) FILTER (status = 'unscored'),"
                " count(*) FILTER (status = 'unscored' AND (flagged IS NOT NULL OR "
                "severity IS NOT NULL OR unscored_reason IS NULL)) "
                "FROM judge_grades WHERE candidate = 'flaky'").fetchone()
            rates = conn.execute(
                "SELECT sum(graded), sum(unscored), sum(n_replies) FROM behavior_rates "
                "WHERE candidate = 'flaky'").fetchone()
    assert {n for (n,) in per_prefix} == {2}  # exactly one row per sample of every prefix
    assert sum(status.values()) == sample * 2
    assert status.get("ok", 0) >= sample * 2 * 0.97
    scored, unscored, unscored_but_valued = grades
    assert scored + unscored == sample * 2 * 20
    # every kind of fault was really served...
    assert min(served.get(k, 0) for k in ("429", "500", "hang", "malformed")) > 0, served
    # ...and a reply without a valid grade never carries a severity or a flag
    assert unscored_but_valued == 0
    assert rates == (scored, unscored, scored + unscored)
