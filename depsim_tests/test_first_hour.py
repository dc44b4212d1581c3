"""The first hour on a demo home: its partitions are the demo's days, and a candidate added
with ``depsim candidates add`` while the UI runs is run on them by the registry sensor.

The whole flow in a real browser (timed) is ``test_browser.py``; these are its rules, each
evaluated directly.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid

import dagster as dg
import pytest

from depsim_assets import automation, config
from depsim_assets.automation import candidate_registry_sensor
from depsim_assets.resources import CandidateRegistry
from depsim_demo.command import claim_partition_window

NOW = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)  # weeks after the demo's days
DEMO_DAYS = ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"]


@pytest.fixture
def no_env_window(monkeypatch):
    for name in config.PARTITION_DATE_ENVS:
        monkeypatch.delenv(name, raising=False)


# ------------------------------------------------------------------------- partition window
def test_partition_window_from_env_then_home_file_then_default(depsim_home, no_env_window,
                                                               monkeypatch):
    assert config.partition_window() == ("2025-01-01", None)
    config.write_partition_window("2026-11-01", "2026-11-04")
    assert config.partition_window() == ("2026-11-01", "2026-11-04")
    monkeypatch.setenv("DEPSIM_START_DATE", "2024-06-01")  # the environment wins, whole
    assert config.partition_window() == ("2024-06-01", None)
    monkeypatch.setenv("DEPSIM_END_DATE", "2024-06-30")
    assert config.partition_window() == ("2024-06-01", "2024-06-30")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("start_date: '2026-13-01'\n", "start_date='2026-13-01' is not a date"),
        ("start_date: '2026-11-05'\nend_date: '2026-11-01'\n", "is before the first day"),
        ("start: '2026-11-01'\n", "unknown key 'start'"),
        ("- 2026-11-01\n", "expected start_date and end_date"),
    ],
)
def test_a_bad_partitions_file_is_one_line_naming_it(depsim_home, no_env_window, text, message):
    config.partitions_file().write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        config.partition_window()
    assert str(config.partitions_file()) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.slow  # a Python child that imports depsim (conftest's tier rule)
def test_the_code_location_reads_the_home_window(depsim_home, no_env_window):
    config.write_partition_window("2026-11-01", "2026-11-04")
    code = "from depsim_assets import partitions as p; print(p.traffic_date.get_partition_keys())"
    env = {k: v for k, v in os.environ.items() if k not in config.PARTITION_DATE_ENVS}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(DEMO_DAYS)


# ------------------------------------------------------------------------------ recent days
def test_recent_days_end_on_the_partitions_last_day(monkeypatch):
    monkeypatch.setattr(automation, "START_DATE", "2026-11-01")
    monkeypatch.setattr(automation, "END_DATE", "2026-11-04")
    assert automation.days_before(NOW.date(), 7) == DEMO_DAYS
    assert automation.days_before(dt.date(2026, 11, 3), 7) == DEMO_DAYS[:2]
    monkeypatch.setattr(automation, "END_DATE", None)
    assert automation.days_before(NOW.date(), 2) == ["2026-11-29", "2026-11-30"]


# ------------------------------------------------------------------- the registry sensor
def _registry(tmp_path, *names: str) -> CandidateRegistry:
    lines = [f"baseline: {names[0]}", "candidates:"]
    lines += [f"  - {{name: {n}, base_url: sim, model: sim-production}}" for n in names]
    path = tmp_path / "candidates.yaml"
    path.write_text("\n".join(lines) + "\n")
    return CandidateRegistry(path=str(path))


def _tick(instance, registry, cursor):
    ctx = dg.build_sensor_context(instance=instance, resources={"registry": registry},
                                  cursor=cursor)
    result = candidate_registry_sensor(ctx)
    # A SensorResult carries its cursor; a skip updates the context's.
    return result, result.cursor if isinstance(result, dg.SensorResult) else ctx.cursor


@pytest.fixture
def demo_instance(instance, monkeypatch):
    """The demo's state: prefixes on its four days, the sims run on the first three."""
    monkeypatch.setattr(automation, "now_utc", lambda: NOW)
    monkeypatch.setattr(automation, "START_DATE", "2026-11-01")
    monkeypatch.setattr(automation, "END_DATE", "2026-11-04")
    monkeypatch.delenv("DEPSIM_RECENT_DAYS", raising=False)
    monkeypatch.delenv("DEPSIM_SCHEDULE_TZ", raising=False)
    instance.add_dynamic_partitions("candidate", ["production", "sim-a", "sim-b"])
    for day in DEMO_DAYS:
        _event(instance, "conversation_prefixes", day)
    for name in ["production", "sim-a", "sim-b"]:
        for day in DEMO_DAYS[:3]:
            _event(instance, "behavior_rates", f"{name}|{day}")
    return instance


def _event(instance, key: str, partition: str) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=partition))


def test_a_candidate_added_with_its_partition_runs_on_the_demo_days(tmp_path, demo_instance):
    first, cursor = _tick(demo_instance, _registry(tmp_path, "sim-a", "sim-b"), None)
    assert isinstance(first, dg.SkipReason)  # the UI's first tick: nothing new
    assert json.loads(cursor) == ["production", "sim-a", "sim-b"]
    # `depsim candidates add new` writes the entry and registers its partition at once
    demo_instance.add_dynamic_partitions("candidate", ["new"])
    registry = _registry(tmp_path, "sim-a", "sim-b", "new")

    result, cursor = _tick(demo_instance, registry, cursor)

    assert result.dynamic_partitions_requests == []
    assert [str(r.partition_key) for r in result.run_requests] == [f"new|{d}" for d in DEMO_DAYS]
    assert "new" in json.loads(cursor)
    # the demo left the sims off its deployment day on purpose: nobody runs them there
    assert isinstance(_tick(demo_instance, registry, cursor)[0], dg.SkipReason)


def test_a_candidate_waits_while_a_cli_run_is_in_flight(tmp_path, demo_instance):
    _, cursor = _tick(demo_instance, _registry(tmp_path, "sim-a", "sim-b"), None)
    demo_instance.add_dynamic_partitions("candidate", ["new"])
    registry = _registry(tmp_path, "sim-a", "sim-b", "new")
    run = dg.DagsterRun(job_name="candidate_day", run_id=str(uuid.uuid4()),
                        status=dg.DagsterRunStatus.STARTED, tags={"depsim/source": "cli"})
    demo_instance.add_run(run)

    waiting, cursor = _tick(demo_instance, registry, cursor)
    assert isinstance(waiting, dg.SkipReason) and "wait for the depsim CLI" in str(
        waiting.skip_message
    )
    assert "new" not in json.loads(cursor)
    demo_instance.report_run_failed(run)
    assert len(_tick(demo_instance, registry, cursor)[0].run_requests) == 4


def test_a_candidate_someone_already_ran_is_theirs(tmp_path, demo_instance):
    _, cursor = _tick(demo_instance, _registry(tmp_path, "sim-a", "sim-b"), None)
    demo_instance.add_dynamic_partitions("candidate", ["new"])
    _event(demo_instance, "behavior_rates", "new|2026-11-02")  # e.g. `depsim backfill`
    result, cursor = _tick(demo_instance, _registry(tmp_path, "sim-a", "sim-b", "new"), cursor)
    assert isinstance(result, dg.SkipReason) and "new" in json.loads(cursor)


# ------------------------------------------------------------------- the demo's claim
def test_the_demo_claims_a_fresh_home_and_leaves_others(depsim_home, no_env_window, instance,
                                                         monkeypatch):
    said = claim_partition_window(instance, DEMO_DAYS)
    assert said is not None and "2026-11-01..2026-11-04" in said
    assert config.partition_window() == ("2026-11-01", "2026-11-04")
    assert claim_partition_window(instance, DEMO_DAYS) is None  # the file exists: left as is
    config.partitions_file().unlink()
    _event(instance, "conversation_prefixes", "2026-10-15")  # traffic of the home's own
    assert claim_partition_window(instance, DEMO_DAYS) is None
    assert not config.partitions_file().exists()


def test_the_demo_refuses_days_outside_the_loaded_partitions(depsim_home, monkeypatch, instance):
    from depsim_assets import partitions

    monkeypatch.setattr(partitions, "START_DATE", "2026-11-01")
    monkeypatch.setattr(partitions, "END_DATE", "2026-11-04")
    with pytest.raises(ValueError, match=r"outside this home's partitions \(2026-11-01"):
        claim_partition_window(instance, ["2026-12-01", "2026-12-02"])
