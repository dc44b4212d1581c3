"""Every asset check passes on a healthy graph, fails on a deliberately broken partition, and
(where blocking) stops what is downstream of it in that run.

One small day (80 logged, 40 sampled) is built once through the simulator over real HTTP;
each test breaks one thing, asserts on the run's check evaluations and materializations, and
puts the partition back. Those are e2e; the checks' logic is tested without Dagster too.
"""

import dagster as dg
import duckdb
import pandas as pd
import pytest

from depsim_assets import config, runs
from depsim_assets.definitions import ASSETS, build_resources
from depsim_assets.estimates import checks as estimates_checks
from depsim_assets.judging import assets as judging_assets
from depsim_assets.judging import checks as judging_checks
from depsim_assets.partitions import candidate_by_date, multi_key, traffic_date
from depsim_assets.registry import Candidate, Registry, load_registry, save_registry
from depsim_assets.replay import assets as replay_assets
from depsim_assets.replay import checks as replay_checks
from depsim_assets.sim import SimServer
from depsim_assets.sim.faults import FaultPlan
from depsim_assets.traffic import checks as traffic_checks
from depsim_assets.traffic import deid as deid_module
from depsim_assets.warehouse import (
    CONVERSATION_PREFIXES,
    JUDGE_GRADES,
    read_partition,
    replace_partition,
)
from depsim_demo.synth import write_demo_log
from depsim_tests.canned_endpoint import serve_canned

DAY = "2026-11-02"
SAMPLE, PER_DAY, SEED = 40, 80, 4
BASE, CAND = "sim-production", "sim-candidate-regressed"
CANDIDATE_ASSETS = list(runs.CANDIDATE_ASSETS)
ALL_CHECKS = {
    "no_residual_pii",
    "sampled_conversations_min_size",
    "candidate_completions_complete",
    "candidate_completions_error_share",
    "judge_grades_single_version",
    "judge_grades_unscored_share",
    "candidate_comparison_coverage",
}
THRESHOLD_ENV = ("DEPSIM_MIN_SAMPLE", "DEPSIM_MAX_ERROR_SHARE", "DEPSIM_MAX_UNSCORED_SHARE")


def _sim(name: str, samples: int = 1, **extra) -> Candidate:
    return Candidate(name=name, base_url="sim", model=name, samples=samples, **extra)


def _materialize(instance, selection, key=None, run_config=None):
    return dg.materialize(
        ASSETS,
        selection=selection,
        partition_key=key,
        instance=instance,
        resources=build_resources(),
        run_config=run_config,
        raise_on_error=False,
    )


def _check_only(instance, check, key=None, partitions_def=None):
    """Run one check on the partition as it is in the warehouse, its asset untouched."""
    job = dg.define_asset_job(
        "check_only", selection=dg.AssetSelection.checks(check), partitions_def=partitions_def
    )
    defs = dg.Definitions(assets=ASSETS, jobs=[job], resources=build_resources())
    # partition_key= would ask for a selected asset's partitions; a check-only run has none
    return defs.resolve_job_def("check_only").execute_in_process(
        tags={"dagster/partition": key} if key else None, instance=instance, raise_on_error=False
    )


def _evaluations(result) -> dict:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def _materialized(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def _traffic(instance, sample=SAMPLE):
    config_ = {"ops": {"sampled_conversations": {"config": {"sample_size": sample}}}}
    return _materialize(instance, list(runs.TRAFFIC_ASSETS), DAY, config_)


def _candidate(instance, name, selection=CANDIDATE_ASSETS, run_config=None):
    return _materialize(instance, selection, str(multi_key(name, DAY)), run_config)


def _sql(sql, params=()):
    with duckdb.connect(str(config.warehouse_path())) as conn:
        return conn.execute(sql, list(params)).df()


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    """production, the baseline and a 2-sample candidate, replayed, graded and compared."""
    home = tmp_path_factory.mktemp("checks-home")
    with pytest.MonkeyPatch.context() as mp, dg.DagsterInstance.ephemeral() as instance:
        mp.setenv("DEPSIM_HOME", str(home))
        for name in ("DEPSIM_WAREHOUSE", "DEPSIM_JUDGE_BASE_URL", *THRESHOLD_ENV):
            mp.delenv(name, raising=False)
        write_demo_log(config.log_root(), [DAY], per_day=PER_DAY, seed=SEED)
        save_registry(Registry(baseline=BASE, candidates=[_sim(BASE), _sim(CAND, samples=2)]))
        runs.ensure_candidate_partitions(instance, [BASE, CAND])
        results = []
        for run in runs.plan_graph([DAY], [BASE, CAND], sample_size=SAMPLE):
            # the comparison alone of the unpartitioned assets: the others have no checks
            assets = list(run.assets) if run.partition_key else ["candidate_comparison"]
            results.append(_materialize(instance, assets, run.partition_key, run.run_config))
        yield {"instance": instance, "mp": mp, "results": results}


@pytest.mark.e2e
def test_every_check_passes_on_a_healthy_graph(graph):
    assert all(r.success for r in graph["results"])
    seen: dict[str, list] = {}
    for result in graph["results"]:
        for e in result.get_asset_check_evaluations():
            seen.setdefault(e.check_name, []).append(e)
    assert set(seen) == ALL_CHECKS
    failed = [(name, e.description) for name, es in seen.items() for e in es if not e.passed]
    assert failed == []
    # run per partition: completeness once per candidate partition, with its own samples
    complete = {e.partition: e for e in seen["candidate_completions_complete"]}
    assert len(complete) == 3
    assert complete[str(multi_key(CAND, DAY))].metadata["expected_rows"].value == SAMPLE * 2
    assert complete[str(multi_key("production", DAY))].metadata["rows"].value == SAMPLE
    (coverage,) = seen["candidate_comparison_coverage"]
    assert coverage.metadata["pairs"].value == 2 and coverage.metadata["gaps"].value == 0


@pytest.mark.e2e
def test_too_small_a_sample_fails_and_stops_prefixes(graph):
    instance, mp = graph["instance"], graph["mp"]
    small = _traffic(instance, sample=10)
    mp.setenv("DEPSIM_MIN_SAMPLE", "10")
    try:  # the same 10 rows, checked again under a lower minimum
        allowed = _check_only(
            instance, traffic_checks.sampled_conversations_min_size, DAY, traffic_date
        )
    finally:
        mp.delenv("DEPSIM_MIN_SAMPLE")
    check = _evaluations(small)["sampled_conversations_min_size"]
    assert not check.passed and not small.success
    assert check.metadata["sampled"].value == 10 and check.metadata["min_sample"].value == 30
    # no prefixes were cut from 10 rows: the day's prefixes are still the 40 of the fixture
    assert _materialized(small) == {"sampled_conversations"}
    assert len(_sql("SELECT * FROM conversation_prefixes")) == SAMPLE
    assert _evaluations(allowed)["sampled_conversations_min_size"].passed


@pytest.mark.e2e
def test_the_cli_names_the_check_that_stopped_it(graph):
    (traffic,) = [r for r in runs.plan_graph([DAY], [], sample_size=10) if r.partition_key == DAY]
    with pytest.raises(runs.RunFailed, match="sampled_conversations: sampled_conversations_min"):
        runs.execute([traffic], graph["instance"])


@pytest.mark.e2e
def test_residual_pii_blocks_prefixes(graph, monkeypatch):
    def identity(self, messages, conversation_id, *, surrogates=None):
        return messages, {}

    monkeypatch.setattr(deid_module.Deidentifier, "deidentify_messages", identity)
    leaked = _traffic(graph["instance"])
    # The residue gate runs before anything is written: the day fails, the check never sees
    # rows, and neither the sample nor prefixes (the candidates' input) hold the leak.
    assert not leaked.success and _materialized(leaked) == set()
    assert "no_residual_pii" not in _evaluations(leaked)
    assert len(_sql("SELECT * FROM sampled_conversations")) == 0
    assert len(_sql("SELECT * FROM conversation_prefixes")) == 0
    assert not _sql("SELECT passed FROM sampling_status")["passed"].iloc[0]
    # Put the partition back: the same seed gives the same sample, and the check passes.
    monkeypatch.undo()
    restored = _traffic(graph["instance"])
    assert restored.success and _evaluations(restored)["no_residual_pii"].passed
    assert len(_sql("SELECT * FROM conversation_prefixes")) == SAMPLE


def _reading_prefixes(monkeypatch, change):
    """Make the replay see a changed prefix table (the check still reads the real one)."""
    real = replay_assets.read_partition

    def read(conn, table, keys):
        frame = real(conn, table, keys)
        return change(frame) if table is CONVERSATION_PREFIXES else frame

    monkeypatch.setattr(replay_assets, "read_partition", read)


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("change", "problem", "count"),
    [
        (lambda f: f.iloc[1:], "missing", 2),  # a prefix never replayed: both samples missing
        (lambda f: pd.concat([f, f.iloc[:1]]), "duplicated", 2),  # a prefix replayed twice
    ],
    ids=["missing", "duplicated"],
)
def test_incomplete_completions_fail_and_stop_grading(graph, monkeypatch, change, problem, count):
    _reading_prefixes(monkeypatch, change)
    broken = _candidate(graph["instance"], CAND)
    monkeypatch.undo()
    restored = _candidate(graph["instance"], CAND, ["candidate_completions"])  # from the cache
    check = _evaluations(broken)["candidate_completions_complete"]
    assert not check.passed and not broken.success
    assert check.metadata[problem].value == count
    assert len(check.metadata[f"first_{problem}"].value) == count
    # neither grades nor rates were computed from the incomplete replay in that run
    assert _materialized(broken) == {"candidate_completions"}
    assert restored.success and _evaluations(restored)["candidate_completions_complete"].passed


@pytest.mark.e2e
def test_completeness_follows_the_registry_samples(graph):
    # someone raised samples to 3: the partition replayed with 2 is now incomplete
    registry = load_registry(config.registry_path())
    raised = registry.model_copy(update={"candidates": [_sim(BASE), _sim(CAND, samples=3)]})
    save_registry(raised)
    try:
        result = _check_only(
            graph["instance"],
            replay_checks.candidate_completions_complete,
            str(multi_key(CAND, DAY)),
            candidate_by_date,
        )
    finally:
        save_registry(registry)
    check = _evaluations(result)["candidate_completions_complete"]
    assert not check.passed and check.metadata["missing"].value == SAMPLE
    assert _materialized(result) == set()


@pytest.mark.e2e
def test_error_share_over_the_threshold_fails_and_stops_grading(graph):
    instance, mp = graph["instance"], graph["mp"]
    registry = load_registry(config.registry_path())
    plan = FaultPlan(rate_500=0.3, seed=3)
    with SimServer(faults=plan) as server:
        flaky = Candidate(
            name="flaky", base_url=server.base_url, model=CAND, max_retries=0, timeout_s=10
        )
        save_registry(registry.model_copy(update={"candidates": [*registry.candidates, flaky]}))
        runs.ensure_candidate_partitions(instance, ["flaky"])
        try:
            broken = _candidate(instance, "flaky")
            mp.setenv("DEPSIM_MAX_ERROR_SHARE", "0.9")
            tolerated = _candidate(instance, "flaky", selection=["candidate_completions"])
        finally:
            mp.delenv("DEPSIM_MAX_ERROR_SHARE", raising=False)
            save_registry(registry)
            _sql("DELETE FROM candidate_completions WHERE candidate = 'flaky'")
            _sql("DELETE FROM judge_grades WHERE candidate = 'flaky'")
    check = _evaluations(broken)["candidate_completions_error_share"]
    assert not check.passed and not broken.success
    share = check.metadata["error_share"].value
    assert 0.15 < share < 0.45 and check.metadata["max_error_share"].value == 0.05
    assert set(check.metadata["errors_by_class"].value) and check.metadata["errors"].value > 0
    assert _evaluations(broken)["candidate_completions_complete"].passed  # errors are rows
    assert _materialized(broken) == {"candidate_completions"}
    assert _evaluations(tolerated)["candidate_completions_error_share"].passed


@pytest.mark.e2e
def test_unscored_share_over_the_threshold_stops_rates(graph):
    instance, mp = graph["instance"], graph["mp"]
    server, url = serve_canned({"content": "Looks fine to me!"})
    mp.setenv("DEPSIM_JUDGE_BASE_URL", url)
    one_try = {"ops": {"judge_grades": {"config": {"validation_attempts": 1}}}}
    try:
        broken = _candidate(instance, CAND, ["judge_grades", "behavior_rates"], one_try)
    finally:
        mp.delenv("DEPSIM_JUDGE_BASE_URL")
        server.shutdown()
    restored = _candidate(instance, CAND, ["judge_grades"])
    check = _evaluations(broken)["judge_grades_unscored_share"]
    assert not check.passed and check.metadata["unscored_share"].value == 1.0
    assert _materialized(broken) == {"judge_grades"} and not broken.success
    assert restored.success and _evaluations(restored)["judge_grades_unscored_share"].passed


@pytest.mark.e2e
def test_mixed_versions_fail_and_stop_rates(graph, monkeypatch):
    real = judging_assets.grade_rows
    planted = []

    def old_taxonomy_on_one_reply(*args, **kwargs):
        rows = real(*args, **kwargs)
        if not planted:
            planted.append(rows[0]["completion_id"])
            for row in rows:
                row["taxonomy_version"] = "planted-old-version"
        return rows

    monkeypatch.setattr(judging_assets, "grade_rows", old_taxonomy_on_one_reply)
    broken = _candidate(graph["instance"], CAND, ["judge_grades", "behavior_rates"])
    monkeypatch.undo()
    restored = _candidate(graph["instance"], CAND, ["judge_grades"])
    check = _evaluations(broken)["judge_grades_single_version"]
    assert not check.passed and check.metadata["versions"].value == 2
    versions = check.metadata["rows_by_version"].records  # a typed table, one row per version
    assert "planted-old-version" in {r.data["taxonomy_version"] for r in versions}
    assert _materialized(broken) == {"judge_grades"} and not broken.success
    assert restored.success and _evaluations(restored)["judge_grades_single_version"].passed


@pytest.mark.e2e
def test_missing_baseline_rows_fail_the_comparison_coverage(graph):
    keys = {"candidate": BASE, "traffic_date": DAY}
    with duckdb.connect(str(config.warehouse_path())) as conn:
        saved = read_partition(conn, JUDGE_GRADES, keys)
        dropped = sorted(set(saved["conversation_id"]))[:3]
        replace_partition(conn, JUDGE_GRADES, saved[~saved["conversation_id"].isin(dropped)], keys)
    try:
        broken = _materialize(graph["instance"], ["candidate_comparison"])
    finally:
        with duckdb.connect(str(config.warehouse_path())) as conn:
            replace_partition(conn, JUDGE_GRADES, saved, keys)
    restored = _check_only(graph["instance"], estimates_checks.candidate_comparison_coverage)
    check = _evaluations(broken)["candidate_comparison_coverage"]
    assert not check.passed and not broken.success
    assert check.metadata["gaps"].value == 2  # production and the candidate, on DAY
    rows = [r.data for r in check.metadata["coverage"].records]  # a typed table
    gap = {"candidate": CAND, "traffic_date": DAY, "prefixes": SAMPLE}
    gap |= {"baseline_prefixes": SAMPLE - 3, "only_candidate": 3, "only_baseline": 0}
    assert {**gap, "covered": False} in rows
    # the comparison itself is written (it pairs what both arms have); the check says what
    # it left out, and would block anything built on it
    assert _materialized(broken) == {"candidate_comparison"}
    assert _evaluations(restored)["candidate_comparison_coverage"].passed


def test_check_logic_without_dagster():
    grades = pd.DataFrame(
        {
            "taxonomy_version": ["t1"] * 3,
            "judge_prompt_version": ["p1"] * 3,
            "flag_threshold": [2, 2, 3],
        }
    )
    assert not judging_checks.version_result(grades).passed  # a threshold mix is a mix too
    assert judging_checks.version_result(grades.iloc[:2]).passed
    report = replay_checks.completeness(
        {"a", "b"},
        pd.DataFrame({"conversation_id": ["a", "a", "b", "c"], "sample_index": [0, 1, 0, 0]}),
        samples=1,
    )
    assert report["extra"] == [("a", 1), ("c", 0)] and report["missing"] == []
    graded = pd.DataFrame(
        {
            "candidate": [BASE, BASE, CAND, CAND, "production"],
            "traffic_date": ["d1", "d2", "d1", "d3", "d9"],
            "conversation_id": ["x", "y", "x", "z", "q"],
        }
    )
    table = estimates_checks.coverage_table(graded, BASE, skip_production_dates={"d9"})
    # d1 matches; d3 has no baseline at all; the baseline-only d2 is not a gap; d9 skipped
    assert table[["traffic_date", "covered"]].values.tolist() == [["d1", True], ["d3", False]]


def test_a_bad_threshold_env_is_an_error_naming_it(monkeypatch):
    monkeypatch.setenv("DEPSIM_MAX_ERROR_SHARE", "five percent")
    with pytest.raises(ValueError, match="DEPSIM_MAX_ERROR_SHARE"):
        config.env_threshold("DEPSIM_MAX_ERROR_SHARE", 0.05)
    monkeypatch.setenv("DEPSIM_MAX_ERROR_SHARE", "5")
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        config.env_threshold("DEPSIM_MAX_ERROR_SHARE", 0.05)
    monkeypatch.delenv("DEPSIM_MAX_ERROR_SHARE")
    assert config.env_threshold("DEPSIM_MAX_ERROR_SHARE", 0.05) == 0.05


@pytest.mark.e2e
def test_rates_and_comparison_carry_tables_and_plots(graph):
    events = {}
    for result in graph["results"]:
        for e in result.get_asset_materialization_events():
            events[e.asset_key.to_user_string()] = e.materialization.metadata
    for name, keys in {
        "behavior_rates": ["rates", "rates_plot"],
        "candidate_comparison": ["comparison", "changes", "forest_plot"],
    }.items():
        meta = events[name]
        for key in keys:
            plot = key.endswith("plot")
            kind = dg.MarkdownMetadataValue if plot else dg.TableMetadataValue
            assert isinstance(meta[key], kind), (name, key)
            if plot:
                text = meta[key].value
                assert text.startswith("![") and "](data:image/png;base64," in text
                assert text.endswith(")") and "\n" not in text
            else:
                assert {c.name for c in meta[key].schema.columns} >= {"category"}
    comparison = events["candidate_comparison"]["comparison"].records
    assert len(comparison) == 2 * 20  # 20 categories x 2 candidates
    funnels = sorted(k for k in events["candidate_comparison"] if k.startswith("funnel_"))
    assert funnels == ["funnel_disallowed_content", "funnel_misalignment"]
