"""What the ticks request, executed: rows appear, a retired candidate's rows stay.

One home folder, one persistent instance, the real code location (``build_definitions``):
the schedule samples two days (one of them caught up), the new-day sensor runs production
and the baseline on them, a candidate added to the registry is run by the registry sensor
on the recent day (``DEPSIM_RECENT_DAYS=1``), the comparison sensor compares them all, and
retiring the candidate removes its partition but none of its rows.
"""

import datetime as dt

import dagster as dg
import duckdb
import pytest

from depsim_assets import automation, config
from depsim_assets.definitions import build_definitions
from depsim_assets.registry import (
    Candidate,
    Registry,
    retire_candidate,
    save_registry,
    upsert_candidate,
)
from depsim_assets.resources import CandidateRegistry, TrafficSource
from depsim_demo.synth import write_demo_log
from depsim_tests.conftest import TEST_SALT

pytestmark = pytest.mark.e2e

TICK = dt.datetime(2026, 11, 20, 2, 0, tzinfo=dt.UTC)
DAYS = ["2026-11-18", "2026-11-19"]
SAMPLE = 30
CATEGORIES = 20
TRAFFIC_CONFIG = {"ops": {"sampled_conversations": {"config": {"sample_size": SAMPLE}}}}


def _counts(table: str) -> dict[str, int]:
    with duckdb.connect(str(config.warehouse_path()), read_only=True) as conn:
        rows = conn.execute(
            f"SELECT candidate || '|' || traffic_date, count(*) FROM {table} GROUP BY 1"
        ).fetchall()
    return dict(rows)


def _apply_partitions(instance, result) -> None:
    """What the daemon does with a tick's dynamic partition requests."""
    for request in result.dynamic_partitions_requests:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)


def _execute(defs, instance, requests, job_name, run_config=None) -> None:
    job = defs.resolve_job_def(job_name)
    for request in requests:
        assert (request.job_name or job_name) == job_name
        result = job.execute_in_process(
            instance=instance,
            partition_key=request.partition_key,
            tags=request.tags,
            run_config=run_config,
        )
        assert result.success


@pytest.fixture
def stored(depsim_home):
    folder = depsim_home / "dagster"
    folder.mkdir()
    with dg.instance_for_test(temp_dir=str(folder)) as inst:
        yield inst


def test_ticks_launch_runs_that_write_rows(depsim_home, stored, monkeypatch):
    monkeypatch.setattr(automation, "now_utc", lambda: TICK)
    monkeypatch.setenv("DEPSIM_RECENT_DAYS", "1")  # a new candidate runs on yesterday only
    for name in ("DEPSIM_JUDGE_BASE_URL", "DEPSIM_JUDGE_MODEL", "DEPSIM_SCHEDULE_TZ"):
        monkeypatch.delenv(name, raising=False)
    write_demo_log(config.log_root(), DAYS, per_day=60, seed=5)
    save_registry(
        Registry(
            baseline="sim-production",
            candidates=[Candidate(name="sim-production", base_url="sim", model="sim-production")],
        )
    )
    defs = build_definitions()
    repo = defs.get_repository_def()
    registry = CandidateRegistry(path=str(config.registry_path()))

    def sensor_tick(name, cursor=None):
        """Evaluate as the daemon does: run keys, job and partition keys resolved and checked
        against the instance (plus the partitions the same tick adds)."""
        with dg.build_sensor_context(
            instance=stored,
            instance_ref=stored.get_ref(),
            repository_def=repo,
            resources={} if name == "comparison_sensor" else {"registry": registry},
            cursor=cursor,
        ) as ctx:
            return repo.get_sensor_def(name).evaluate_tick(ctx)

    # 1. The registry sensor adds production and the baseline; no day has prefixes yet.
    first = sensor_tick("candidate_registry_sensor")
    assert first.run_requests == []
    _apply_partitions(stored, first)
    assert stored.get_dynamic_partitions("candidate") == ["production", "sim-production"]

    # 2. The schedule at 02:00 on 11-20: yesterday, plus 11-18 caught up.
    schedule = repo.get_schedule_def("daily_traffic_schedule")
    with dg.build_schedule_context(
        instance=stored,
        scheduled_execution_time=TICK,
        repository_def=repo,
        resources={"traffic": TrafficSource(log_root=str(config.log_root()), deid_salt=TEST_SALT)},
    ) as ctx:
        traffic = schedule.evaluate_tick(ctx).run_requests
    assert [r.partition_key for r in traffic] == DAYS
    _execute(defs, stored, traffic, schedule.job_name, TRAFFIC_CONFIG)
    with duckdb.connect(str(config.warehouse_path()), read_only=True) as conn:
        per_day = conn.execute(
            "SELECT traffic_date, count(*) FROM conversation_prefixes GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert [(str(d), n) for d, n in per_day] == [(d, SAMPLE) for d in DAYS]
    assert stored.get_materialized_partitions(dg.AssetKey("conversation_prefixes")) == set(DAYS)

    # 3. The new-day sensor runs production and the baseline on both days.
    new_days = sensor_tick("new_day_sensor")
    expected = [f"{c}|{d}" for d in DAYS for c in ("production", "sim-production")]
    assert [str(r.partition_key) for r in new_days.run_requests] == expected
    _execute(defs, stored, new_days.run_requests, "candidate_day")
    assert _counts("candidate_completions") == dict.fromkeys(expected, SAMPLE)
    assert _counts("judge_grades") == dict.fromkeys(expected, SAMPLE * CATEGORIES)
    assert _counts("behavior_rates") == dict.fromkeys(expected, CATEGORIES)
    assert sensor_tick("new_day_sensor", new_days.cursor).skip_message

    # 4. A candidate added to the registry: its partitions, and a run on the recent day.
    upsert_candidate(
        Candidate(name="sim-candidate-regressed", base_url="sim", model="sim-candidate-regressed")
    )
    added = sensor_tick("candidate_registry_sensor")
    new_keys = ["sim-candidate-regressed|2026-11-19"]
    assert [str(r.partition_key) for r in added.run_requests] == new_keys
    _apply_partitions(stored, added)
    _execute(defs, stored, added.run_requests, "candidate_day")
    rates = _counts("behavior_rates")
    assert {k: rates.get(k) for k in new_keys} == dict.fromkeys(new_keys, CATEGORIES)
    assert sensor_tick("candidate_registry_sensor").skip_message

    # Nothing in flight: one comparison run over everything graded.
    compared = sensor_tick("comparison_sensor")
    _execute(defs, stored, compared.run_requests, "comparison")
    with duckdb.connect(str(config.warehouse_path()), read_only=True) as conn:
        rows = conn.execute("SELECT DISTINCT candidate FROM candidate_comparison").fetchall()
    names = {r[0] for r in rows}
    assert {"production", "sim-candidate-regressed"} <= names

    # 5. Retired: its partition goes, its rows and past materializations stay.
    assert retire_candidate("sim-candidate-regressed") is True
    retired = sensor_tick("candidate_registry_sensor")
    assert retired.run_requests == []
    _apply_partitions(stored, retired)
    assert "sim-candidate-regressed" not in stored.get_dynamic_partitions("candidate")
    assert _counts("behavior_rates") == rates
    assert _counts("judge_grades")[new_keys[0]] == SAMPLE * CATEGORIES
    materialized = stored.get_materialized_partitions(dg.AssetKey("behavior_rates"))
    assert set(new_keys) <= materialized
