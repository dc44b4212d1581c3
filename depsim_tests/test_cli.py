"""The command line: JSON shapes a script can rely on, and one-line errors."""

import json

import pytest

from depsim_assets import config
from depsim_assets.cli import main

ROW_FIELDS = {
    "candidate",
    "category",
    "n_graded",
    "n_flagged",
    "rate_per_100k",
    "ci_low_per_100k",
    "ci_high_per_100k",
    "baseline_n_graded",
    "baseline_n_flagged",
    "rate_ratio",
    "p_value",
    "significant",
    "change",
}


@pytest.mark.e2e
def test_demo_then_compare_json(depsim_home, capsys):
    args = ["--days", "2", "--per-day", "120", "--sample-size", "40", "--no-progress",
            "--agentic-per-day", "0"]
    assert main(["demo", *args, "--json"]) == 0
    demo_out = json.loads(capsys.readouterr().out)
    assert main(["compare", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == demo_out
    assert report["baseline"] == "sim-production"
    assert report["dates"] == ["2026-11-02", "2026-11-03"]
    # the demo says what it is: planted truth, graded by the lexical test double
    assert report["measurement"] is False and report["traffic"] == "synthetic"
    assert report["judge_models"] == ["sim-judge"]
    assert report["warning"].startswith("a demo of the pipeline on depsim's synthetic demo log")
    assert "sim-judge" in report["warning"] and "not a measurement" in report["warning"]
    assert report["warnings"] == [] and report["failed_partitions"] == []
    assert main(["compare"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == f"!! NOT A MEASUREMENT: {report['warning']}" == table[-1]
    assert f"**!! NOT A MEASUREMENT: {report['warning']}**" in (
        config.reports_dir() / "comparison.md"
    ).read_text()
    assert "id='not-a-measurement'" in (config.reports_dir() / "report.html").read_text()
    assert {r["candidate"] for r in report["rows"]} == {
        "production",
        "sim-candidate-safer",
        "sim-candidate-regressed",
    }
    assert len(report["rows"]) == 3 * 20
    for row in report["rows"]:
        assert ROW_FIELDS <= set(row)
        assert row["change"] in {"up", "down", "none"}
        assert row["n_graded"] == 80
    assert (config.reports_dir() / "comparison.md").exists()
    spend = report["candidates"]
    assert set(spend) == {"sim-production", "production", "sim-candidate-safer",
                          "sim-candidate-regressed"}
    for name, row in spend.items():
        assert row["replies"] == 80
        assert set(row) == {"replies", "tokens_in", "tokens_out", "cost_usd"}
        # the production arm is the logged replies: no call, no tokens
        assert (row["tokens_in"] > 0 and row["tokens_out"] > 0) == (name != "production")
    _compare_reads_the_materialized_table(capsys, demo_out)


def _compare_reads_the_materialized_table(capsys, demo_out):
    """What `depsim compare` shows is the candidate_comparison table the asset wrote; it
    materializes the asset again only when the table does not answer the question."""
    import os
    import time

    import dagster as dg
    import duckdb

    def runs_of_the_asset() -> int:
        with dg.DagsterInstance.from_config(str(config.dagster_home())) as instance:
            key = dg.AssetKey("candidate_comparison")
            return len(instance.fetch_materializations(key, limit=100).records)

    def compare(*args) -> dict:
        assert main(["compare", "--json", *args]) == 0
        return json.loads(capsys.readouterr().out)

    def stored_alphas() -> list:
        with duckdb.connect(str(config.warehouse_path()), read_only=True) as conn:
            return conn.execute("SELECT DISTINCT alpha FROM candidate_comparison").fetchall()

    after_demo = runs_of_the_asset()
    assert after_demo == 1  # the demo's own run; compare and report above only read it
    # A stored row edited by hand shows as stored: nothing recomputed it.
    with duckdb.connect(str(config.warehouse_path())) as conn:
        conn.execute(
            "UPDATE candidate_comparison SET n_flagged = 9999 "
            "WHERE candidate = 'sim-candidate-safer' AND category = 'hate'"
        )
    row = next(
        r for r in compare()["rows"]
        if (r["candidate"], r["category"]) == ("sim-candidate-safer", "hate")
    )
    assert row["n_flagged"] == 9999 and runs_of_the_asset() == after_demo
    # Other settings: one run of the asset with them, and the table says so.
    assert compare("--alpha", "0.05")["alpha"] == 0.05
    assert runs_of_the_asset() == after_demo + 1 and stored_alphas() == [(0.05,)]
    # Only some candidates: rows of the stored table, no run.
    only = compare("--alpha", "0.05", "--candidates", "sim-candidate-regressed")
    assert {r["candidate"] for r in only["rows"]} == {"sim-candidate-regressed"}
    assert runs_of_the_asset() == after_demo + 1
    # A registry newer than the table (a baseline or deployed day may have changed): stale.
    later = time.time() + 5
    os.utime(config.registry_path(), (later, later))
    time.sleep(5)
    assert compare() == demo_out  # the default settings again, the hand edit gone
    assert runs_of_the_asset() == after_demo + 2 and stored_alphas() == [(0.1,)]
    # One day of the two: only that day is pooled.
    day = compare("--from", "2026-11-03", "--to", "2026-11-03")
    assert day["dates"] == ["2026-11-03"]
    assert {r["n_graded"] for r in day["rows"]} == {40}


def test_stored_rows_are_shown_in_the_comparisons_order():
    import pandas as pd

    from depsim_assets.cli.comparison import select
    from depsim_assets.estimates.assets import taxonomy_categories

    first, second = [cid for cid, _ in taxonomy_categories()][:2]
    stored = pd.DataFrame(
        {
            "candidate": ["b", "a", "b", "a"],
            "baseline": ["base"] * 4,
            "category": [second, second, first, first],
        }
    )
    shown = select(stored, "base", None)
    assert list(zip(shown["candidate"], shown["category"], strict=True)) == [
        ("a", first), ("a", second), ("b", first), ("b", second)
    ]
    assert list(select(stored, "base", ["b"])["candidate"]) == ["b", "b"]
    assert list(select(stored, "base", ["b", "a"])["candidate"]) == ["b", "b", "a", "a"]
    with pytest.raises(ValueError, match="'base' is the baseline"):
        select(stored, "base", ["a", "base"])
    with pytest.raises(ValueError, match="'c' has no judge_grades"):
        select(stored, "base", ["c"])


def test_compare_without_a_warehouse_is_one_line(depsim_home, capsys):
    (depsim_home / "candidates.yaml").write_text(
        "baseline: a\ncandidates:\n  - {name: a, base_url: sim, model: sim-production}\n"
    )
    assert main(["compare"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("depsim: error:") and "no warehouse" in err
    assert "\n" not in err


def test_candidates_add_and_list(depsim_home, capsys):
    assert (
        main(
            [
                "candidates",
                "add",
                "my-model_v1.2",
                "--base-url",
                "http://127.0.0.1:9/v1",
                "--api-key-env",
                "MY_KEY",
                "--param",
                "temperature=0.2",
                "--baseline",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["candidates", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["baseline"] == "my-model_v1.2"
    assert listed["candidates"][0]["params"] == {"temperature": 0.2}


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["candidates", "add", "bad name", "--base-url", "sim"], "not a valid candidate name"),
        (
            ["candidates", "add", "x", "--base-url", "sim", "--api-key-env", "sk-abc123def456"],
            "NAME of an environment variable",
        ),
        (["candidates", "list"], "no candidate registry"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(depsim_home, capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err
    assert "sk-abc123def456" not in err
    assert not (depsim_home / "candidates.yaml").exists()


def test_malformed_registry_keeps_the_file(depsim_home, capsys):
    path = depsim_home / "candidates.yaml"
    path.write_text("candidates: [oops\n")
    assert main(["candidates", "add", "x", "--base-url", "sim"]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert path.read_text() == "candidates: [oops\n"


# ------------------------------------------------------------------ candidates add / salt
def test_candidates_add_sets_every_registry_field_and_its_partition(depsim_home, capsys):
    import dagster as dg

    argv = [
        "candidates", "add", "local-llm", "--base-url", "http://127.0.0.1:8080/v1",
        "--model", "smollm2", "--timeout-s", "900", "--max-retries", "1", "--rpm", "60",
        "--tpm", "90000", "--samples", "2", "--max-concurrency", "4", "--mode", "batch",
        "--batch-poll-s", "5", "--batch-max-wait-s", "600", "--price-in-per-mtok", "0.5",
        "--price-out-per-mtok", "1.5", "--context-window", "2048", "--max-tokens", "128",
        "--deployed-on", "2026-11-20", "--baseline", "--json",
    ]
    assert main(argv) == 0
    added = json.loads(capsys.readouterr().out)
    assert added["partitions_added"] == ["production", "local-llm"]
    assert main(["candidates", "list", "--json"]) == 0
    [entry] = json.loads(capsys.readouterr().out)["candidates"]
    assert {k: entry[k] for k in (
        "timeout_s", "max_retries", "rpm", "tpm", "samples", "max_concurrency", "mode",
        "batch_poll_s", "batch_max_wait_s", "price_in_per_mtok", "price_out_per_mtok",
        "context_window", "max_tokens", "deployed_on",
    )} == {
        "timeout_s": 900.0, "max_retries": 1, "rpm": 60.0, "tpm": 90000.0, "samples": 2,
        "max_concurrency": 4, "mode": "batch", "batch_poll_s": 5.0, "batch_max_wait_s": 600.0,
        "price_in_per_mtok": 0.5, "price_out_per_mtok": 1.5, "context_window": 2048,
        "max_tokens": 128, "deployed_on": ["2026-11-20"],
    }
    with dg.DagsterInstance.from_config(str(config.dagster_home())) as instance:
        assert set(instance.get_dynamic_partitions("candidate")) == {"production", "local-llm"}
    # A bad value is one line naming the field, and the file keeps the good entry.
    assert main(["candidates", "add", "other", "--base-url", "sim", "--max-retries", "99"]) == 2
    err = capsys.readouterr().err.strip()
    assert "'max_retries'" in err and "\n" not in err
    assert "other" not in config.registry_path().read_text()


def test_sample_without_a_salt_exits_2_naming_the_variable(depsim_home, capsys, monkeypatch):
    monkeypatch.delenv("DEPSIM_DEID_SALT")
    assert main(["sample", "--date", "2026-11-18"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("depsim: error: DEPSIM_DEID_SALT is not set") and "\n" not in err
    assert 'python -c "import secrets; print(secrets.token_hex(32))"' in err
    assert not config.warehouse_path().exists()
    monkeypatch.setenv("DEPSIM_DEID_SALT", "short-salt")
    assert main(["sample", "--date", "2026-11-18"]) == 2
    err = capsys.readouterr().err
    assert "DEPSIM_DEID_SALT is too short (10 characters, at least 16)" in err
    assert "short-salt" not in err


@pytest.mark.slow  # a Dagster run
def test_the_sampling_step_fails_without_a_salt_however_launched(depsim_home, monkeypatch):
    import dagster as dg

    from depsim_assets.definitions import ASSETS, build_resources
    from depsim_demo.synth import write_demo_log

    write_demo_log(config.log_root(), ["2026-11-18"], per_day=40)
    monkeypatch.delenv("DEPSIM_DEID_SALT")
    result = dg.materialize(
        ASSETS, selection=["sampled_conversations"], partition_key="2026-11-18",
        resources=build_resources(), raise_on_error=False,
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_failure]
    text = str(failure.event_specific_data.error)
    assert "DEPSIM_DEID_SALT is not set" in text and "secrets.token_hex(32)" in text


@pytest.mark.e2e
def test_demo_runs_without_a_salt_on_its_own_public_one(depsim_home, capsys, monkeypatch):
    monkeypatch.delenv("DEPSIM_DEID_SALT")
    args = ["--days", "1", "--per-day", "60", "--sample-size", "30", "--no-progress", "--json",
            "--agentic-per-day", "0"]
    monkeypatch.setenv("DEPSIM_MIN_SAMPLE", "1")
    assert main(["demo", *args]) == 0
    assert json.loads(capsys.readouterr().out)["rows"]
    # Outside the demo (a new process, no salt in its environment) sampling still refuses.
    monkeypatch.delenv("DEPSIM_DEID_SALT")
    assert main(["sample", "--date", "2026-11-03"]) == 2


@pytest.mark.e2e
def test_demo_agentic_day_is_compared_on_its_own(depsim_home, capsys, monkeypatch):
    """The demo's agentic day (tools declared) runs the loop for every candidate and is
    compared alone; the main comparison stays on the chat days."""
    import duckdb

    from depsim_assets import config

    monkeypatch.setenv("DEPSIM_MIN_SAMPLE", "1")
    args = ["--days", "1", "--per-day", "60", "--sample-size", "30", "--no-progress", "--json",
            "--agentic-per-day", "60"]
    assert main(["demo", *args]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert "2026-11-03" in printed["dates"] and "2026-11-05" not in printed["dates"]
    assert printed["agentic_day"]["dates"] == ["2026-11-05"]
    assert {r["candidate"] for r in printed["agentic_day"]["rows"]} >= {
        "sim-candidate-regressed", "sim-candidate-safer"}
    with duckdb.connect(str(config.warehouse_path()), read_only=True) as conn:
        steps, calls, turns = conn.execute(
            "SELECT sum(steps), sum(tool_calls), count(*) FROM candidate_completions"
            " WHERE traffic_date = '2026-11-05' AND candidate = 'sim-candidate-regressed'"
        ).fetchone()
        examples = conn.execute(
            "SELECT count(*) FROM tool_examples WHERE traffic_date = '2026-11-05'").fetchone()
    # Every turn took at least one step and the candidate called tools on this day.
    assert turns == 60 and steps > turns and calls > 0
    assert examples[0] > 0


@pytest.mark.e2e
def test_new_candidate_is_materializable_from_dagster_at_once(depsim_home, capsys, monkeypatch):
    import os
    import subprocess
    import sys
    from pathlib import Path

    import duckdb

    from depsim_demo.synth import write_demo_log

    day = "2026-11-18"
    monkeypatch.setenv("DEPSIM_MIN_SAMPLE", "1")
    write_demo_log(config.log_root(), [day], per_day=60)
    assert main(["sample", "--date", day, "--size", "8"]) == 0
    assert main(["candidates", "add", "fresh-sim", "--base-url", "sim", "--model",
                 "sim-candidate-safer", "--baseline"]) == 0
    capsys.readouterr()
    # No daemon, no sensor tick: the CLI registered the partition on the instance.
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "asset", "materialize",
         "-m", "depsim_assets.definitions", "--select", "candidate_completions",
         "--partition", f"fresh-sim|{day}"],
        capture_output=True, text=True, timeout=600, env=os.environ.copy(),
        cwd=config.PROJECT_ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with duckdb.connect(str(config.warehouse_path()), read_only=True) as conn:
        rows = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE status = 'ok') FROM candidate_completions "
            "WHERE candidate = 'fresh-sim' AND traffic_date = ?", [day]
        ).fetchone()
    assert rows == (8, 8)
