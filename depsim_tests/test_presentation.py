"""What the Dagster UI shows: kinds, owners and a stage tag on every asset; typed tables and
rounded numbers in metadata; CLI runs under the named jobs of their run groups."""

from __future__ import annotations

import math
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from depsim_assets import config, runs
from depsim_assets.definitions import build_definitions
from depsim_assets.metadata import (
    KINDS,
    STAGE_TAG,
    ordered,
    rounded,
    rounded_json,
    stage_definitions,
    table_metadata,
)
from depsim_assets.partitions import RUN_GROUPS

# The assets that call a model endpoint; every other asset is plain computation.
MODEL_CALLERS = {"candidate_completions", "judge_grades", "tool_realism"}


@pytest.fixture
def location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dg.Definitions:
    monkeypatch.setenv("DEPSIM_HOME", str(tmp_path))
    # Shown only with a labels file: set one so every asset of every stage is looked at.
    monkeypatch.setenv("DEPSIM_JUDGE_LABELS", str(tmp_path / "labels.jsonl"))
    return build_definitions()


def test_every_asset_has_kinds_an_owner_and_its_stage_tag(location: dg.Definitions) -> None:
    nodes = location.resolve_asset_graph().asset_nodes
    assert len(nodes) == 11
    for node in nodes:
        name, stage = node.key.to_user_string(), node.group_name
        compute = "openai" if name in MODEL_CALLERS else "python"
        assert node.kinds == {"duckdb", compute}, name
        assert node.owners == [f"team:depsim-{stage}"], name
        assert node.tags.get(STAGE_TAG) == stage, name


def _asset(name: str) -> dg.AssetsDefinition:
    @dg.asset(name=name)
    def _made() -> None:
        return None

    return _made


def test_a_stage_refuses_an_asset_without_kinds_or_kinds_it_does_not_know() -> None:
    ok = stage_definitions("s", assets=[_asset("a")], asset_checks=[], kinds={"a": {"python"}})
    assert ok.resolve_asset_graph().get(dg.AssetKey("a")).kinds == {"python"}
    with pytest.raises(ValueError, match="asset 'b' has no kinds"):
        stage_definitions("s", assets=[_asset("b")], asset_checks=[], kinds={})
    with pytest.raises(ValueError, match=r"kinds name assets it does not have: \['c'\]"):
        stage_definitions("s", assets=[], asset_checks=[], kinds={"c": {"python"}})
    with pytest.raises(ValueError, match="unknown kinds"):
        stage_definitions("s", assets=[_asset("a")], asset_checks=[], kinds={"a": {"spark"}})
    assert {"duckdb", "openai", "python"} == KINDS


def test_table_metadata_is_typed_rounded_and_cut() -> None:
    frame = pd.DataFrame(
        {
            "name": ["a", "b" * 200, None],
            "n": [1, 2, 3],
            "n_with_nulls": [1.0, np.nan, 3.0],  # a whole-number column read back with NULLs
            "rate": [1 / 3, 2.0e-7, np.nan],
            "ok": [True, False, True],
        }
    )
    table = table_metadata(frame, max_rows=2)
    types = {c.name: c.type for c in table.schema.columns}
    assert types == {
        "name": "string",
        "n": "int",
        "n_with_nulls": "int",
        "rate": "float",
        "ok": "bool",
    }
    rows = [r.data for r in table.records]
    assert len(rows) == 2
    assert rows[0] == {"name": "a", "n": 1, "n_with_nulls": 1, "rate": 0.3333, "ok": True}
    assert rows[1]["rate"] == 2e-7 and rows[1]["n_with_nulls"] is None
    assert len(rows[1]["name"]) == 80 and rows[1]["name"].endswith("...")
    with pytest.raises(KeyError, match="no column missing"):
        table_metadata(frame, columns=["name", "missing"])


def test_rounded_numbers() -> None:
    assert rounded(0.12345678901234) == 0.1235
    assert rounded(np.float64(123456.789)) == 123500.0
    assert rounded(np.int64(7)) == 7 and isinstance(rounded(np.int64(7)), int)
    assert rounded(math.nan) is None and rounded(True) is True and rounded("x") == "x"
    assert rounded_json({"a": [1 / 3, {"b": 2 / 3}], "c": "t"}) == {
        "a": [0.3333, {"b": 0.6667}],
        "c": "t",
    }


def test_ordered_puts_the_named_keys_first_and_last() -> None:
    meta = {"b": 1, "schema": 2, "rows": 3, "c": 4}
    assert list(ordered(meta, first=["rows", "absent"], last=["schema"])) == [
        "rows",
        "b",
        "c",
        "schema",
    ]


def test_each_run_group_runs_as_its_named_job(location: dg.Definitions) -> None:
    for group, (names, _) in RUN_GROUPS.items():
        name = runs.job_name(names)
        assert name == runs.GROUP_JOBS[group].name
        job = location.resolve_job_def(name)
        assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} >= set(names)
    assert runs.job_name(("candidate_comparison",)) == "comparison"
    with pytest.raises(ValueError, match="no run group holds all"):
        runs.job_name(("sampled_conversations", "judge_grades"))


def _markdown_tables(metadata: dict[str, dg.MetadataValue]) -> list[str]:
    return [
        key
        for key, value in metadata.items()
        if isinstance(value, dg.MarkdownMetadataValue) and "|---" in (value.value or "")
    ]


def _long_floats(metadata: dict[str, dg.MetadataValue]) -> list[str]:
    """Floats printed with more than 6 significant digits (a float64 prints 17)."""
    return [
        key
        for key, value in metadata.items()
        if isinstance(value, dg.FloatMetadataValue)
        and value.value is not None
        and math.isfinite(value.value)
        and value.value != float(f"{value.value:.6g}")
    ]


@pytest.mark.e2e
def test_a_cli_run_shows_named_jobs_typed_tables_and_rounded_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole graph for one small day through the simulator, as the CLI runs it."""
    from depsim_demo import registry as demo
    from depsim_demo.synth import write_demo_log

    day = "2026-11-01"
    monkeypatch.setenv("DEPSIM_HOME", str(tmp_path))
    monkeypatch.delenv("DEPSIM_WAREHOUSE", raising=False)
    monkeypatch.setenv("DEPSIM_MIN_SAMPLE", "10")
    write_demo_log(config.log_root(), [day], per_day=40, seed=5)
    registry = demo.register_sim_candidates()
    with dg.DagsterInstance.ephemeral() as instance:
        runs.ensure_candidate_partitions(instance, registry.names())
        runs.execute(runs.plan_graph([day], registry.names(), sample_size=12), instance)
        records = instance.get_run_records()
        assert {r.dagster_run.job_name for r in records} == {
            "traffic_day",
            "candidate_day",
            "comparison",
        }
        # the checks ran inside the named jobs, as they did inside dg.materialize
        checked = {
            r.key.name
            for key in (
                dg.AssetCheckKey(dg.AssetKey("sampled_conversations"), "no_residual_pii"),
                dg.AssetCheckKey(dg.AssetKey("judge_grades"), "judge_grades_single_version"),
            )
            for r in instance.event_log_storage.get_asset_check_execution_history(key, limit=5)
            if r.status.value == "SUCCEEDED"
        }
        assert checked == {"no_residual_pii", "judge_grades_single_version"}
        seen = 0
        for node in build_definitions().resolve_asset_graph().asset_nodes:
            event = instance.get_latest_materialization_event(node.key)
            if event is None or event.asset_materialization is None:
                continue
            seen += 1
            metadata = dict(event.asset_materialization.metadata)
            name = node.key.to_user_string()
            assert _markdown_tables(metadata) == [], name
            assert _long_floats(metadata) == [], name
            # the row count leads (after the measurement note of graded assets)
            assert "dagster/row_count" in list(metadata)[:3], name
        # all but judge_agreement (needs a labels file) and tool_realism (in no run group)
        assert seen == 9
