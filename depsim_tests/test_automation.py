"""Automation at a fixed clock: the registry sensor, the daily schedule and the new-day sensor.

Materializations the decisions depend on are recorded in a real (ephemeral) Dagster
instance; the end-to-end test at the bottom runs what the ticks request and reads the rows.
"""

import datetime as dt
import uuid

import dagster as dg
import pytest
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill

from depsim_assets import automation
from depsim_assets.automation import (
    Settings,
    build_traffic_schedule,
    candidate_registry_sensor,
    comparison_sensor,
    missing_partitions,
    new_day_sensor,
    retired_partitions,
    settings_from_env,
)
from depsim_assets.partitions import candidate_by_date, traffic_date
from depsim_assets.registry import RegistryError
from depsim_assets.resources import CandidateRegistry, TrafficSource
from depsim_tests.conftest import TEST_SALT

UTC = dt.UTC
# 02:00 UTC on 2026-11-20: "yesterday" is 2026-11-19.
TICK = dt.datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


def _registry(tmp_path, body: str) -> CandidateRegistry:
    path = tmp_path / "candidates.yaml"
    path.write_text(body)
    return CandidateRegistry(path=str(path))


def _entries(*names: str, retired: tuple[str, ...] = ()) -> str:
    lines = [f"baseline: {names[0]}", "candidates:"]
    for name in names:
        flag = ", retired: true" if name in retired else ""
        lines.append(f"  - {{name: {name}, base_url: sim, model: sim-production{flag}}}")
    return "\n".join(lines) + "\n"


def _materialize(instance, key: str, partition: str) -> None:
    """Record a materialization as the instance would after a run (no run, no rows)."""
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=partition))


def _running_run(instance, partition: str, job_name: str = "candidate_day") -> None:
    """A run in progress for ``partition``."""
    instance.add_run(
        dg.DagsterRun(
            job_name=job_name,
            run_id=str(uuid.uuid4()),
            status=dg.DagsterRunStatus.STARTED,
            tags={"dagster/partition": partition},
        )
    )


def _sensor(sensor, instance, registry, cursor=None):
    ctx = dg.build_sensor_context(
        instance=instance, resources={"registry": registry}, cursor=cursor
    )
    return sensor(ctx)


def _keys(requests) -> list[str]:
    return [str(r.partition_key) for r in requests]


@pytest.fixture
def clock(monkeypatch):
    """Fix the sensors' clock at TICK (UTC) and the settings at their defaults."""
    monkeypatch.setattr(automation, "now_utc", lambda: TICK)
    for name in ("DEPSIM_RECENT_DAYS", "DEPSIM_CATCHUP_DAYS", "DEPSIM_SCHEDULE_TZ"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("DEPSIM_SCHEDULE_CRON", raising=False)
    return TICK


# ------------------------------------------------------------------------------------ registry
def test_missing_and_retired_partitions():
    assert missing_partitions(["a", "b"], []) == ["production", "a", "b"]
    assert missing_partitions(["a", "b"], ["production", "a"]) == ["b"]
    assert retired_partitions(["a"], ["production", "a", "b", "c"]) == ["b", "c"]
    assert retired_partitions([], ["production"]) == []


def test_sensor_adds_new_candidates(tmp_path, instance, clock):
    registry = _registry(tmp_path, _entries("cand-1"))
    result = _sensor(candidate_registry_sensor, instance, registry)
    assert isinstance(result, dg.SensorResult)
    (request,) = result.dynamic_partitions_requests
    assert isinstance(request, dg.AddDynamicPartitionsRequest)
    assert request.partitions_def_name == "candidate"
    assert list(request.partition_keys) == ["production", "cand-1"]
    assert result.run_requests == []  # no day has prefixes yet
    instance.add_dynamic_partitions("candidate", ["production", "cand-1"])
    assert isinstance(_sensor(candidate_registry_sensor, instance, registry), dg.SkipReason)


def test_sensor_runs_a_new_candidate_on_recent_days_with_prefixes(tmp_path, instance, clock):
    instance.add_dynamic_partitions("candidate", ["production", "old"])
    # Recent days (7, ending yesterday): 11-13 .. 11-19. Prefixes exist on three of them,
    # one day before the window, and today (incomplete, never requested).
    for day in ["2026-11-12", "2026-11-14", "2026-11-18", "2026-11-19", "2026-11-20"]:
        _materialize(instance, "conversation_prefixes", day)
    # new-2 already has rates for 11-18 newer than that day's prefixes, and a run in progress on
    # 11-19: neither is requested again.
    _materialize(instance, "behavior_rates", "new-2|2026-11-18")
    _running_run(instance, "new-2|2026-11-19")
    registry = _registry(tmp_path, _entries("old", "new-1", "new-2"))

    result = _sensor(candidate_registry_sensor, instance, registry)

    assert list(result.dynamic_partitions_requests[0].partition_keys) == ["new-1", "new-2"]
    assert _keys(result.run_requests) == [
        "new-1|2026-11-14",
        "new-1|2026-11-18",
        "new-1|2026-11-19",
        "new-2|2026-11-14",
    ]
    for request in result.run_requests:
        assert request.job_name == "candidate_day"
        assert request.tags["depsim/source"] == "registry_sensor"
    run_keys = [r.run_key for r in result.run_requests]
    assert len(set(run_keys)) == len(run_keys)
    assert all(
        key.startswith(str(r.partition_key))
        for key, r in zip(run_keys, result.run_requests, strict=True)
    )


def test_recent_days_are_counted_in_the_configured_time_zone(tmp_path, instance, monkeypatch):
    # 23:30 UTC on 11-20 is already 11-21 in Tokyo: yesterday there is 11-20.
    monkeypatch.setattr(
        automation, "now_utc", lambda: dt.datetime(2026, 11, 20, 23, 30, tzinfo=UTC)
    )
    monkeypatch.setenv("DEPSIM_RECENT_DAYS", "2")
    for day in ["2026-11-18", "2026-11-19", "2026-11-20"]:
        _materialize(instance, "conversation_prefixes", day)
    instance.add_dynamic_partitions("candidate", ["production"])
    registry = _registry(tmp_path, _entries("c"))

    monkeypatch.setenv("DEPSIM_SCHEDULE_TZ", "UTC")
    utc = _sensor(candidate_registry_sensor, instance, registry)
    assert _keys(utc.run_requests) == ["c|2026-11-18", "c|2026-11-19"]

    monkeypatch.setenv("DEPSIM_SCHEDULE_TZ", "Asia/Tokyo")
    tokyo = _sensor(candidate_registry_sensor, instance, registry)
    assert _keys(tokyo.run_requests) == ["c|2026-11-19", "c|2026-11-20"]


def test_sensor_retires_removed_and_retired_candidates(tmp_path, instance, clock):
    instance.add_dynamic_partitions("candidate", ["production", "keep", "removed", "old"])
    _materialize(instance, "conversation_prefixes", "2026-11-19")
    registry = _registry(tmp_path, _entries("keep", "old", retired=("old",)))

    result = _sensor(candidate_registry_sensor, instance, registry)

    (request,) = result.dynamic_partitions_requests
    assert isinstance(request, dg.DeleteDynamicPartitionsRequest)
    assert list(request.partition_keys) == ["removed", "old"]
    assert result.run_requests == []  # retiring never launches anything


def test_sensor_adds_and_retires_in_one_tick(tmp_path, instance, clock):
    instance.add_dynamic_partitions("candidate", ["production", "a"])
    registry = _registry(tmp_path, _entries("b"))
    result = _sensor(candidate_registry_sensor, instance, registry)
    add, delete = result.dynamic_partitions_requests
    assert list(add.partition_keys) == ["b"] and list(delete.partition_keys) == ["a"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (_entries("ok") + "  - {name: 'bad name', base_url: sim, model: m}\n", "not a valid"),
        ("candidates: [\n", "not valid YAML"),
        (_entries("a", retired=("a",)), "baseline 'a' is retired"),
    ],
)
def test_bad_registry_fails_the_tick_and_changes_nothing(tmp_path, instance, clock, body, reason):
    instance.add_dynamic_partitions("candidate", ["production", "gone"])
    _materialize(instance, "conversation_prefixes", "2026-11-19")
    registry = _registry(tmp_path, body)
    with pytest.raises(RegistryError, match=reason):
        _sensor(candidate_registry_sensor, instance, registry)
    with pytest.raises(RegistryError, match=reason):
        _sensor(new_day_sensor, instance, registry)
    assert instance.get_dynamic_partitions("candidate") == ["production", "gone"]


def test_no_registry_yet_is_a_skip_not_a_failure(tmp_path, instance, clock):
    missing = CandidateRegistry(path=str(tmp_path / "candidates.yaml"))
    _materialize(instance, "conversation_prefixes", "2026-11-19")
    for sensor in (candidate_registry_sensor, new_day_sensor):
        ctx = dg.build_sensor_context(instance=instance, resources={"registry": missing})
        result = sensor(ctx)
        assert isinstance(result, dg.SkipReason) and "no registry" in result.skip_message
        assert ctx.cursor is None
    assert instance.get_dynamic_partitions("candidate") == []


def test_bad_setting_fails_the_tick_with_its_name(tmp_path, instance, clock, monkeypatch):
    monkeypatch.setenv("DEPSIM_RECENT_DAYS", "a week")
    with pytest.raises(ValueError, match="DEPSIM_RECENT_DAYS='a week'"):
        _sensor(candidate_registry_sensor, instance, _registry(tmp_path, _entries("a")))
    assert instance.get_dynamic_partitions("candidate") == []


# ------------------------------------------------------------------------------------ schedule
@pytest.fixture
def stored(tmp_path):
    """A persistent (SQLite) instance: schedule contexts refuse ephemeral ones."""
    folder = tmp_path / "dagster"
    folder.mkdir()
    with dg.instance_for_test(temp_dir=str(folder)) as inst:
        yield inst


def _schedule_tick(instance, log_root, when, settings=None):
    schedule = build_traffic_schedule(settings or Settings())
    # As a context manager: the context opens its own instance from the ref and must close it.
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=when,
        resources={"traffic": TrafficSource(log_root=str(log_root), deid_salt=TEST_SALT)},
    ) as ctx:
        return schedule(ctx)


def _log_days(root, days):
    for day in days:
        (root / day).mkdir(parents=True, exist_ok=True)


def test_schedule_requests_yesterday_and_catches_up_missed_days(tmp_path, stored):
    logs = tmp_path / "logs"
    # Logs for 11-14 .. 11-19; 11-13 has none (left out, not a failed run).
    _log_days(logs, [f"2026-11-{d}" for d in range(14, 20)])
    for day in ["2026-11-14", "2026-11-16", "2026-11-17"]:
        _materialize(stored, "conversation_prefixes", day)
    # sampled but never cut: still missing, requested again
    _materialize(stored, "sampled_conversations", "2026-11-15")
    _running_run(stored, "2026-11-18", "traffic_day")

    requests = _schedule_tick(stored, logs, TICK)

    assert _keys(requests) == ["2026-11-15", "2026-11-19"]
    assert [r.tags["depsim/catch_up"] for r in requests] == ["True", "False"]
    assert [r.run_key for r in requests] == ["2026-11-15", "2026-11-19"]
    assert all(r.tags["depsim/source"] == "schedule" for r in requests)


def test_schedule_with_nothing_to_do_says_why(tmp_path, stored):
    logs = tmp_path / "logs"
    _log_days(logs, ["2026-11-19"])
    _materialize(stored, "conversation_prefixes", "2026-11-19")
    result = _schedule_tick(stored, logs, TICK, Settings(catchup_days=2))
    assert isinstance(result, dg.SkipReason)
    assert "materialized: 2026-11-19" in result.skip_message
    assert "no log folder: 2026-11-18" in result.skip_message


def test_schedule_window_and_yesterday_follow_the_time_zone(tmp_path, stored):
    logs = tmp_path / "logs"
    _log_days(logs, [f"2026-11-{d}" for d in range(17, 22)])
    # 02:00 in New York on 11-21 is 07:00 UTC: yesterday is 11-20, an open partition.
    ny = dt.datetime(2026, 11, 21, 2, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    got = _schedule_tick(stored, logs, ny, Settings(timezone="America/New_York", catchup_days=2))
    assert _keys(got) == ["2026-11-19", "2026-11-20"]
    # 02:00 in Auckland on 11-21 is 13:00 UTC on 11-20: the 11-20 partition (UTC days) is not
    # open yet, so only 11-19 runs now; 11-20 is caught up by the next tick (when 11-21 is
    # the one not open yet).
    akl = dt.datetime(2026, 11, 20, 13, 0, tzinfo=UTC)
    settings = Settings(timezone="Pacific/Auckland", catchup_days=2)
    assert _keys(_schedule_tick(stored, logs, akl, settings)) == ["2026-11-19"]
    next_tick = akl + dt.timedelta(days=1)
    assert _keys(_schedule_tick(stored, logs, next_tick, settings)) == ["2026-11-20"]


def test_schedule_cron_and_time_zone_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("DEPSIM_SCHEDULE_CRON", "30 5 * * *")
    monkeypatch.setenv("DEPSIM_SCHEDULE_TZ", "Europe/Berlin")
    monkeypatch.setenv("DEPSIM_CATCHUP_DAYS", "3")
    schedule = build_traffic_schedule()
    assert schedule.cron_schedule == "30 5 * * *"
    assert schedule.execution_timezone == "Europe/Berlin"
    assert schedule.job_name == "traffic_day"
    assert settings_from_env().catchup_days == 3
    monkeypatch.delenv("DEPSIM_SCHEDULE_CRON")
    monkeypatch.delenv("DEPSIM_SCHEDULE_TZ")
    default = build_traffic_schedule()
    assert (default.cron_schedule, default.execution_timezone) == ("0 2 * * *", "UTC")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DEPSIM_SCHEDULE_CRON", "every day", "DEPSIM_SCHEDULE_CRON='every day'"),
        ("DEPSIM_SCHEDULE_TZ", "Mars/Olympus", "DEPSIM_SCHEDULE_TZ='Mars/Olympus'"),
        ("DEPSIM_CATCHUP_DAYS", "-1", "DEPSIM_CATCHUP_DAYS=-1"),
    ],
)
def test_bad_schedule_settings_are_refused_by_name(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        build_traffic_schedule()


# ------------------------------------------------------------------------------------ new days
@dg.asset(key="conversation_prefixes", partitions_def=traffic_date)
def _stand_in_prefixes() -> None:
    """Stands in for the real asset so a run's tags can be set without sampling a log."""


def test_new_day_sensor_runs_every_active_candidate_once(tmp_path, instance):
    instance.add_dynamic_partitions("candidate", ["production", "a", "b", "retired"])
    registry = _registry(
        tmp_path, _entries("a", "b", "retired", "not-added-yet", retired=("retired",))
    )
    assert isinstance(_sensor(new_day_sensor, instance, registry), dg.SkipReason)

    _materialize(instance, "conversation_prefixes", "2026-11-19")
    _materialize(instance, "conversation_prefixes", "2026-11-18")
    _materialize(instance, "behavior_rates", "b|2026-11-18")  # newer than 11-18's prefixes
    result = _sensor(new_day_sensor, instance, registry)
    assert _keys(result.run_requests) == [
        "production|2026-11-18",
        "a|2026-11-18",
        "production|2026-11-19",
        "a|2026-11-19",
        "b|2026-11-19",
    ]
    assert all(r.tags["depsim/source"] == "new_day_sensor" for r in result.run_requests)

    # The next tick starts after the cursor: nothing twice.
    again = _sensor(new_day_sensor, instance, registry, cursor=result.cursor)
    assert isinstance(again, dg.SkipReason)

    # The day is sampled again later: its candidates are stale, so they run again.
    _materialize(instance, "conversation_prefixes", "2026-11-18")
    rerun = _sensor(new_day_sensor, instance, registry, cursor=result.cursor)
    assert _keys(rerun.run_requests) == [
        "production|2026-11-18",
        "a|2026-11-18",
        "b|2026-11-18",
    ]
    assert not {r.run_key for r in rerun.run_requests} & {r.run_key for r in result.run_requests}


def _backfill(instance, *assets: str) -> str:
    """A backfill in progress targeting ``assets`` (as the UI or `depsim backfill` submits)."""
    backfill_id = uuid.uuid4().hex[:8]
    instance.add_backfill(
        PartitionBackfill(
            backfill_id=backfill_id,
            status=BulkActionStatus.REQUESTED,
            from_failure=False,
            tags={},
            backfill_timestamp=TICK.timestamp(),
            asset_selection=[dg.AssetKey(a) for a in assets],
        )
    )
    return backfill_id


def test_new_day_sensor_leaves_days_to_whoever_planned_their_candidates(tmp_path, instance):
    instance.add_dynamic_partitions("candidate", ["production", "a"])
    registry = _registry(tmp_path, _entries("a"))
    whole_graph = _backfill(instance, "conversation_prefixes", "candidate_completions")
    traffic_only = _backfill(instance, "sampled_conversations", "conversation_prefixes")
    for day, tags in [
        ("2026-11-15", {"depsim/source": "cli"}),  # the CLI runs the candidates next
        ("2026-11-16", {"dagster/backfill": whole_graph}),  # so does this backfill
        ("2026-11-17", {"dagster/backfill": traffic_only}),  # this one leaves them to us
        ("2026-11-18", {"depsim/source": "ui"}),
    ]:
        dg.materialize([_stand_in_prefixes], partition_key=day, instance=instance, tags=tags)
    result = _sensor(new_day_sensor, instance, registry)
    assert _keys(result.run_requests) == [
        "production|2026-11-17",
        "a|2026-11-17",
        "production|2026-11-18",
        "a|2026-11-18",
    ]


# ---------------------------------------------------------------------------------- comparison
@dg.asset(key="behavior_rates", partitions_def=candidate_by_date)
def _stand_in_rates() -> None:
    """Stands in for the real asset so a run's tags can be set without grading anything."""


def test_comparison_sensor_waits_for_candidate_runs_then_runs_once(instance):
    assert isinstance(comparison_sensor(dg.build_sensor_context(instance=instance)), dg.SkipReason)
    _materialize(instance, "behavior_rates", "a|2026-11-19")
    _materialize(instance, "behavior_rates", "b|2026-11-19")
    _running_run(instance, "c|2026-11-19")  # a candidate_day run still going

    waiting = dg.build_sensor_context(instance=instance)
    skipped = comparison_sensor(waiting)
    assert isinstance(skipped, dg.SkipReason) and "waiting" in skipped.skip_message
    assert waiting.cursor is None  # the rates are still ahead of the cursor

    for record in instance.get_run_records():
        instance.report_run_failed(record.dagster_run)
    result = comparison_sensor(dg.build_sensor_context(instance=instance))
    (request,) = result.run_requests
    assert request.job_name is None or request.job_name == "comparison"
    assert request.partition_key is None and request.run_key == f"rates-{result.cursor}"
    again = dg.build_sensor_context(instance=instance, cursor=result.cursor)
    assert isinstance(comparison_sensor(again), dg.SkipReason)


def test_comparison_sensor_leaves_cli_rates_to_the_cli(instance):
    instance.add_dynamic_partitions("candidate", ["a"])
    dg.materialize(
        [_stand_in_rates],
        partition_key="a|2026-11-19",
        instance=instance,
        tags={"depsim/source": "cli"},
    )
    ctx = dg.build_sensor_context(instance=instance)
    assert isinstance(comparison_sensor(ctx), dg.SkipReason)
    assert ctx.cursor is not None  # handled: not looked at again
