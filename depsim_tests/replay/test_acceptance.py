"""The call engine's acceptance runs, through Dagster, against the simulator in its own
process: a 1,000-prefix partition under heavy faults, and a rerun that calls nothing."""

import time

import dagster as dg
import duckdb
import pytest

from depsim_assets import config, runs
from depsim_assets.registry import Candidate, Registry, save_registry
from depsim_assets.sim.process import SimProcess
from depsim_demo.synth import write_demo_log

pytestmark = pytest.mark.e2e

DAY = "2026-11-01"


def _candidate_runs(name: str, sample: int) -> tuple[list, list]:
    plan = runs.plan_graph([DAY], [name], sample_size=sample)
    return ([r for r in plan if r.label.startswith("traffic")],
            [r for r in plan if r.label.startswith(name)])


def _scalar(sql: str):
    with duckdb.connect(str(config.warehouse_path()), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def test_thousand_prefix_partition_completes_under_faults(depsim_home, instance, monkeypatch):
    """20% 429s (Retry-After 1 s), 5% 500s, 2% hung requests, 2% malformed judge output."""
    prefixes, samples = 1000, 2
    spec = "429=0.2,retry_after=1,500=0.05,hang=0.02,hang_s=5,malformed=0.02,seed=11"
    with SimProcess(spec) as sim:
        monkeypatch.setenv("DEPSIM_JUDGE_BASE_URL", sim.base_url)
        write_demo_log(config.log_root(), [DAY], per_day=1300, seed=5)
        save_registry(Registry(baseline="flaky", candidates=[Candidate(
            name="flaky", base_url=sim.base_url, model="sim-candidate-regressed",
            samples=samples, max_concurrency=64, timeout_s=2, max_retries=8)]))
        runs.ensure_candidate_partitions(instance, ["flaky"])
        traffic, candidate = _candidate_runs("flaky", prefixes)
        runs.execute(traffic + candidate, instance)
        served = sim.stats()["faults"]
    per_prefix = _scalar(
        "SELECT p.conversation_id, count(c.completion_id), count(DISTINCT c.sample_index) "
        "FROM conversation_prefixes p LEFT JOIN candidate_completions c "
        "ON c.conversation_id = p.conversation_id AND c.candidate = 'flaky' GROUP BY 1")
    status = dict(_scalar("SELECT status, count(*) FROM candidate_completions "
                          "WHERE candidate = 'flaky' GROUP BY 1"))
    (grades,) = _scalar(
        "SELECT count(*) FILTER (status = 'scored'), count(*) FILTER (status = 'unscored'), "
        "count(*) FILTER (status = 'unscored' AND (flagged IS NOT NULL OR severity IS NOT NULL "
        "OR unscored_reason IS NULL)), count(DISTINCT completion_id) "
        "FROM judge_grades WHERE candidate = 'flaky'")
    (rates,) = _scalar("SELECT sum(graded), sum(unscored), sum(n_replies) FROM behavior_rates "
                       "WHERE candidate = 'flaky'")
    # every prefix has exactly one row per sample
    assert len(per_prefix) == prefixes
    assert {(n, k) for _, n, k in per_prefix} == {(samples, samples)}
    # counts by final status reconcile with the requests
    assert sum(status.values()) == prefixes * samples
    assert set(status) <= {"ok", "error"}
    assert status["ok"] >= prefixes * samples * 0.99, status
    # every kind of fault was really served...
    assert min(served.get(k, 0) for k in ("429", "500", "hang", "malformed")) > 0, served
    meta = instance.get_latest_materialization_event(
        dg.AssetKey("candidate_completions")).asset_materialization.metadata
    attempts = meta["attempts_by_outcome"].value
    assert attempts["rate_limited"] > 0 and attempts["server_error"] > 0
    assert attempts["timeout"] > 0
    assert sum(attempts.values()) >= prefixes * samples
    # ...and every reply has its 20 grade rows, none unscored but counted clean
    scored, unscored, unscored_but_valued, replies = grades
    assert replies == prefixes * samples
    assert scored + unscored == prefixes * samples * 20
    assert unscored_but_valued == 0
    assert rates == (scored, unscored, scored + unscored)


def test_second_materialization_makes_no_calls_and_is_ten_times_faster(
    depsim_home, instance, monkeypatch
):
    """Replies and verdicts come from the warehouse: the simulator's counter does not move."""
    prefixes = 300
    # A realistic latency (a short completion takes about a second), at modest concurrency.
    with SimProcess("latency_ms=1000") as sim:
        monkeypatch.setenv("DEPSIM_JUDGE_BASE_URL", sim.base_url)
        write_demo_log(config.log_root(), [DAY], per_day=400, seed=6)
        save_registry(Registry(baseline="steady", candidates=[Candidate(
            name="steady", base_url=sim.base_url, model="sim-production",
            max_concurrency=16)]))
        runs.ensure_candidate_partitions(instance, ["steady"])
        traffic, candidate = _candidate_runs("steady", prefixes)
        runs.execute(traffic, instance)
        # The assets that call models: the replies and their verdicts (and their checks).
        candidate = [runs.PlannedRun(r.label, ("candidate_completions", "judge_grades"),
                                     r.partition_key) for r in candidate]
        started = time.perf_counter()
        runs.execute(candidate, instance)
        first_s = time.perf_counter() - started
        served = sim.stats()["total"]
        before = _scalar("SELECT * FROM judge_grades ORDER BY grade_id")
        started = time.perf_counter()
        runs.execute(candidate, instance)
        second_s = time.perf_counter() - started
        assert sim.stats()["total"] == served
    assert served >= 2 * prefixes  # the first run did call: one reply and one verdict each
    assert _scalar("SELECT * FROM judge_grades ORDER BY grade_id") == before
    replay = instance.get_latest_materialization_event(
        dg.AssetKey("candidate_completions")).asset_materialization.metadata
    judge = instance.get_latest_materialization_event(
        dg.AssetKey("judge_grades")).asset_materialization.metadata
    assert replay["calls_made"].value == 0 and replay["cache_hits"].value == prefixes
    assert judge["judge_calls_made"].value == 0 and judge["verdicts_cached"].value == prefixes
    assert second_s < first_s / 10, (first_s, second_s)
