"""The code location's shape, against a committed snapshot (no Dagster run: fast tier).

What a user or the daemon sees of the definitions: every asset (group, kinds, owners, tags,
partitions, upstream keys, resources), every asset check (its asset, blocking, partitions,
resources), the jobs and what they select, the schedules, the sensors, the resource keys and
the executor. A change to
any of them fails this test with a unified diff; when the change is meant, accept it with

    DEPSIM_UPDATE_SNAPSHOT=1 .venv/bin/python -m pytest depsim_tests/test_definitions_snapshot.py

and commit ``depsim_tests/snapshots/definitions.json`` with the change that caused it.

The definitions are built with every setting that shapes them at its default (schedule cron
and time zone, labels file, step concurrency), so the snapshot does not depend on the shell.
"""

from __future__ import annotations

import difflib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from depsim_assets import definitions as definitions_module
from depsim_assets import partitions
from depsim_assets.definitions import ASSETS, build_definitions, check_run_groups
from depsim_assets.partitions import START_DATE

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"
UPDATE_ENV = "DEPSIM_UPDATE_SNAPSHOT"
# Settings read when the definitions are built; unset, each takes its default.
SHAPING_ENV = (
    "DEPSIM_SCHEDULE_CRON",
    "DEPSIM_SCHEDULE_TZ",
    "DEPSIM_JUDGE_LABELS",
    "DEPSIM_MAX_CONCURRENT_STEPS",
)


# The partitions declared once in partitions.py, referred to by name in the snapshot.
NAMED_PARTITIONS = {
    "traffic_date": partitions.traffic_date,
    "candidate": partitions.candidate,
    "candidate_by_date": partitions.candidate_by_date,
}


def _partitions(pdef: dg.PartitionsDefinition | None, *, by_name: bool = True) -> Any:
    if pdef is None:
        return None
    if by_name:
        for name, declared in NAMED_PARTITIONS.items():
            if pdef == declared:
                return name
    if isinstance(pdef, dg.MultiPartitionsDefinition):
        dims = pdef.partitions_defs
        return {"multi": {dim.name: _partitions(dim.partitions_def) for dim in dims}}
    if isinstance(pdef, dg.DynamicPartitionsDefinition):
        return {"dynamic": pdef.name}
    if isinstance(pdef, dg.TimeWindowPartitionsDefinition):
        start = pdef.start.date().isoformat()
        return {
            "time_window": {
                "cron": pdef.cron_schedule,
                "timezone": pdef.timezone,
                # Configurable ($DEPSIM_START_DATE): recorded by name when it is the configured one.
                "start": "START_DATE" if start == START_DATE else start,
                "end_offset": pdef.end_offset,
            }
        }
    return {type(pdef).__name__: str(pdef)}


def _keys(keys) -> list[str]:
    return sorted(k.to_user_string() for k in keys)


def _check_name(key: dg.AssetCheckKey) -> str:
    return f"{key.asset_key.to_user_string()}:{key.name}"


def describe(defs: dg.Definitions) -> dict[str, Any]:
    """The shape of ``defs`` as plain JSON-ready data, sorted so it diffs line by line."""
    graph = defs.resolve_asset_graph()
    repo = defs.get_repository_def()
    assets = {
        node.key.to_user_string(): {
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "owners": sorted(node.owners),
            "tags": dict(sorted(node.tags.items())),
            "partitions": _partitions(node.partitions_def),
            "deps": _keys(node.parent_keys),
            "resources": sorted(repo.assets_defs_by_key[node.key].required_resource_keys),
        }
        for node in graph.asset_nodes
    }
    checks = {
        _check_name(key): {
            "asset": key.asset_key.to_user_string(),
            "blocking": spec.blocking,
            "partitions": _partitions(checks_def.partitions_def),
            "additional_deps": _keys(dep.asset_key for dep in spec.additional_deps),
            "resources": sorted(checks_def.required_resource_keys),
        }
        for key, checks_def in repo.asset_checks_defs_by_key.items()
        for spec in checks_def.check_specs
        if spec.key == key
    }
    # Asset jobs (define_asset_job) carry their selection; dagster does not re-export the
    # class, so they are told apart by it.
    selections = {job.name: getattr(job, "selection", None) for job in defs.jobs or []}
    jobs = {
        name: {
            "assets": _keys(selection.resolve(graph)) if selection else None,
            "checks": sorted(_check_name(k) for k in selection.resolve_checks(graph))
            if selection
            else None,
            "partitions": _partitions(defs.resolve_job_def(name).partitions_def),
            "description": defs.resolve_job_def(name).description,
        }
        for name, selection in selections.items()
    }
    schedules = {
        s.name: {
            "cron": s.cron_schedule,
            "timezone": s.execution_timezone,
            "job": s.job_name,
            "default_status": s.default_status.value,
            "resources": sorted(s.required_resource_keys),
        }
        for s in repo.schedule_defs
    }
    sensors = {
        s.name: {
            "jobs": sorted(t.job_name for t in s.targets),
            "minimum_interval_seconds": s.minimum_interval_seconds,
            "default_status": s.default_status.value,
            "resources": sorted(s.required_resource_keys),
        }
        for s in repo.sensor_defs
    }
    executor = defs.executor
    return {
        "partitions": {
            name: _partitions(pdef, by_name=False) for name, pdef in NAMED_PARTITIONS.items()
        },
        "assets": dict(sorted(assets.items())),
        "asset_checks": dict(sorted(checks.items())),
        "jobs": dict(sorted(jobs.items())),
        "schedules": dict(sorted(schedules.items())),
        "sensors": dict(sorted(sensors.items())),
        "resources": sorted((defs.resources or {}).keys()),
        "executor": executor.name if isinstance(executor, dg.ExecutorDefinition) else None,
    }


def _text(shape: dict[str, Any]) -> str:
    return json.dumps(shape, indent=2, sort_keys=False) + "\n"


@pytest.fixture
def location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dg.Definitions:
    monkeypatch.setenv("DEPSIM_HOME", str(tmp_path))
    for name in SHAPING_ENV:
        monkeypatch.delenv(name, raising=False)
    return build_definitions()


def test_definitions_match_the_snapshot(location: dg.Definitions) -> None:
    actual = _text(describe(location))
    if os.environ.get(UPDATE_ENV) == "1":
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(actual)
    assert SNAPSHOT.exists(), f"no snapshot at {SNAPSHOT}: run with {UPDATE_ENV}=1 to write it"
    expected = SNAPSHOT.read_text()
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                fromfile="snapshots/definitions.json (committed)",
                tofile="definitions (now)",
                n=8,  # enough context to show which asset, check or sensor changed
            )
        )
        pytest.fail(
            f"the definitions changed:\n{diff}\nIf that is meant, accept it with "
            f"{UPDATE_ENV}=1 pytest depsim_tests/{Path(__file__).name} and commit the snapshot.",
            pytrace=False,
        )


def test_the_snapshot_sees_a_changed_definition(location: dg.Definitions) -> None:
    """The description is sensitive to what it pins: an asset moved to another group and
    given an owner changes it there, and nowhere else."""
    before = describe(location)
    target = dg.AssetKey("sampled_conversations")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        moved = location.map_asset_specs(
            func=lambda spec: spec.replace_attributes(group_name="elsewhere", owners=["team:x"])
            if spec.key == target
            else spec
        )
    after = describe(moved)
    assert before["assets"]["sampled_conversations"]["group"] == "traffic"
    assert after["assets"]["sampled_conversations"]["group"] == "elsewhere"
    assert after["assets"]["sampled_conversations"]["owners"] == ["team:x"]
    after["assets"]["sampled_conversations"] = before["assets"]["sampled_conversations"]
    assert after == before


def test_settings_that_shape_the_location_reach_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The cron and time zone of the schedule and the labels file are read at build time:
    the snapshot is of the defaults, and a setting shows in the description."""
    monkeypatch.setenv("DEPSIM_HOME", str(tmp_path))
    monkeypatch.setenv("DEPSIM_SCHEDULE_CRON", "30 4 * * *")
    monkeypatch.setenv("DEPSIM_SCHEDULE_TZ", "Europe/Paris")
    monkeypatch.setenv("DEPSIM_JUDGE_LABELS", str(tmp_path / "labels.jsonl"))
    shape = describe(build_definitions())
    schedule = shape["schedules"]["daily_traffic_schedule"]
    assert (schedule["cron"], schedule["timezone"]) == ("30 4 * * *", "Europe/Paris")
    assert "judge_agreement" in shape["assets"]


def test_the_run_groups_name_existing_assets_on_one_partitioning(
    location: dg.Definitions,
) -> None:
    """The groups declared once in partitions.RUN_GROUPS are what the jobs select, and the
    code location refuses one that names an asset no stage has, or mixes partitionings."""
    jobs = {
        name: set(spec["assets"])
        for name, spec in describe(location)["jobs"].items()
        if spec["assets"] is not None
    }
    assert jobs == {
        "traffic_day": set(partitions.TRAFFIC_ASSETS),
        "candidate_day": set(partitions.CANDIDATE_ASSETS),
        "comparison": set(partitions.COMPARISON_ASSETS),
    }
    check_run_groups(ASSETS)
    renamed = {**partitions.RUN_GROUPS, "traffic": (("sampled_conversation",), None)}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(definitions_module, "RUN_GROUPS", renamed)
        with pytest.raises(ValueError, match="'sampled_conversation', which no stage declares"):
            check_run_groups(ASSETS)
        mixed = {**partitions.RUN_GROUPS, "comparison": (("behavior_rates",), None)}
        mp.setattr(definitions_module, "RUN_GROUPS", mixed)
        with pytest.raises(ValueError, match="'behavior_rates' is not partitioned like"):
            check_run_groups(ASSETS)
