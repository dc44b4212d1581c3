"""The traffic assets through Dagster: `depsim sample`, its JSON, and the residual-PII check."""

from __future__ import annotations

import json

import dagster as dg
import duckdb
import pandas as pd
import pytest

from depsim_assets import cli, config
from depsim_assets.definitions import ASSETS, build_resources
from depsim_assets.traffic import deid as deid_module
from depsim_assets.traffic.assets import residual_pii_result
from depsim_assets.warehouse import SAMPLED_CONVERSATIONS, replace_partition
from depsim_demo.synth import planted_pii, write_demo_log

DATE = "2025-03-01"
PER_DAY = 400
KEYS = [
    "date",
    "records_in",
    "quarantined",
    "quarantine_reasons",
    "ineligible",
    "eligible",
    "sampled",
    "pii_replaced",
    "unreadable_files",
    "unreadable",
    "residual_quarantined",
    "kept",
]


def canned(prefix, cid):
    return "Sure, here is an answer."


@pytest.fixture
def demo_day(depsim_home):
    write_demo_log(config.log_root(), [DATE], PER_DAY, reply_fn=canned)
    return depsim_home


@pytest.mark.slow  # Dagster runs
def test_depsim_sample_json_is_exactly_the_issue_shape_and_reconciles(demo_day, capsys):
    assert cli.main(["sample", "--date", DATE, "--size", "120", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == KEYS
    assert out["records_in"] == PER_DAY
    ineligible = sum(out["ineligible"].values())
    assert out["records_in"] == out["quarantined"] + ineligible + out["eligible"]
    assert out["quarantined"] == sum(out["quarantine_reasons"].values()) > 0
    assert out["sampled"] == 120 and out["eligible"] > 120
    assert out["kept"] + out["residual_quarantined"] == out["sampled"]
    with duckdb.connect(str(config.warehouse_path()), read_only=True) as conn:
        rows = conn.execute(
            "SELECT pii_counts_json, sampling_weight FROM sampled_conversations"
        ).fetchall()
        n_prefixes = conn.execute("SELECT count(*) FROM conversation_prefixes").fetchone()[0]
    assert n_prefixes == len(rows) == out["kept"]
    # pii_replaced is the sum of the per-row counts; weights are eligible / sampled.
    total: dict[str, int] = {}
    for raw, weight in rows:
        for k, v in json.loads(raw).items():
            total[k] = total.get(k, 0) + v
        assert weight == pytest.approx(out["eligible"] / out["kept"])
    assert out["pii_replaced"] == dict(sorted(total.items()))


@pytest.mark.slow  # Dagster runs
def test_sample_by_fraction_stratified_by_source(demo_day, capsys):
    args = ["sample", "--date", DATE, "--fraction", "0.5", "--stratify-by", "source", "--json"]
    assert cli.main([*args, "--exclude-model", "nothing"]) == 0
    out = json.loads(capsys.readouterr().out)
    with duckdb.connect(str(config.warehouse_path()), read_only=True) as conn:
        strata = conn.execute(
            "SELECT stratum, count(*), min(sampling_weight), max(sampling_weight) "
            "FROM sampled_conversations GROUP BY stratum"
        ).fetchall()
    assert {s for s, *_ in strata} <= {"chat", "api", "mobile", "unknown"} and len(strata) >= 2
    # Each stratum's weight is its eligible count over its sample, the same on every row.
    assert sum(n * w for _, n, w, _ in strata) == pytest.approx(out["eligible"])
    assert all(lo == hi for *_, lo, hi in strata)
    assert 0.35 < out["sampled"] / out["eligible"] < 0.65


def test_bad_sample_arguments_are_one_line_errors(demo_day, capsys):
    assert cli.main(["sample", "--date", "2025-04-01"]) == 2
    assert cli.main(["sample", "--date", DATE, "--stratify-by", "colour"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("depsim: error: ") for line in err)


def _materialize(instance):
    return dg.materialize(
        ASSETS,
        selection=["sampled_conversations", "conversation_prefixes"],
        partition_key=DATE,
        instance=instance,
        resources=build_resources(),
        raise_on_error=False,
    )


def _status(day=DATE):
    with duckdb.connect(str(config.warehouse_path()), read_only=True) as conn:
        return conn.execute(
            "SELECT passed, sampled, kept, residual_quarantined, reason FROM sampling_status"
            " WHERE traffic_date = ?",
            [day],
        ).fetchone()


def _count(table, day=DATE):
    with duckdb.connect(str(config.warehouse_path()), read_only=True) as conn:
        return conn.execute(
            f"SELECT count(*) FROM {table} WHERE traffic_date = ?", [day]
        ).fetchone()[0]


@pytest.mark.slow  # Dagster runs
def test_residue_check_reads_the_recorded_verdict(demo_day, instance):
    result = _materialize(instance)
    [evaluation] = [
        e for e in result.get_asset_check_evaluations() if e.check_name == "no_residual_pii"
    ]
    passed, sampled, kept, residual, reason = _status()
    assert passed and evaluation.passed and reason.startswith("passed")
    assert evaluation.metadata["kept"].value == kept == _count("sampled_conversations")
    assert kept + residual == sampled > 300
    assert _count("conversation_prefixes") == kept
    # A row written into the table behind the verdict's back makes the check fail.
    with duckdb.connect(str(config.warehouse_path())) as conn:
        rows = conn.execute("SELECT * FROM sampled_conversations").df()
        extra = rows.iloc[0].to_dict()
        extra["conversation_id"] = "written-later"
        frame = pd.concat([rows, pd.DataFrame([extra])], ignore_index=True)
        replace_partition(conn, SAMPLED_CONVERSATIONS, frame, {"traffic_date": DATE})
        failed = residual_pii_result(conn, DATE)
    assert not failed.passed and "verdict kept" in failed.description


@pytest.mark.slow  # Dagster runs
def test_a_broken_deidentifier_fails_the_day_and_prefixes_refuse_it(demo_day, instance):
    def identity(self, messages, conversation_id, *, surrogates=None):
        return messages, {}

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(deid_module.Deidentifier, "deidentify_messages", identity)
        result = _materialize(instance)
    assert not result.success
    materialized = {
        e.asset_key.to_user_string() for e in result.get_asset_materialization_events()
    }
    assert materialized == set()
    passed, sampled, kept, residual, reason = _status()
    assert not passed and residual / sampled > 0.01 and "DEPSIM_MAX_RESIDUAL_SHARE" in reason
    # Nothing of the sample was written; the quarantine names where, never what.
    assert _count("sampled_conversations") == 0 and _count("conversation_prefixes") == 0
    with duckdb.connect(str(config.warehouse_path()), read_only=True) as conn:
        details = [
            d
            for (d,) in conn.execute(
                "SELECT detail FROM sampling_quarantine WHERE reason = 'residual_pii'"
            ).fetchall()
        ]
    assert len(details) == residual and all(d.startswith("residual PII: ") for d in details)
    planted = [v.value for vs in planted_pii(DATE, PER_DAY, reply_fn=canned).values() for v in vs]
    assert not any(v in d for v in planted for d in details)
    # The bypass: conversation_prefixes alone for the failed day, de-identifier repaired.
    bypass = dg.materialize(
        ASSETS,
        selection=["conversation_prefixes"],
        partition_key=DATE,
        instance=instance,
        resources=build_resources(),
        raise_on_error=False,
    )
    assert not bypass.success
    [failure] = [e for e in bypass.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.step_failure_data.user_failure_data.description
    expected = f"conversation_prefixes refuses {DATE}: sampling did not pass"
    assert message.startswith(expected), message
    assert "\n" not in message and _count("conversation_prefixes") == 0


@pytest.mark.slow  # Dagster runs
def test_prefixes_refuse_a_day_never_sampled(demo_day, instance):
    with pytest.raises(dg.Failure, match=f"conversation_prefixes refuses {DATE}: no sampling"):
        dg.materialize(
            ASSETS,
            selection=["conversation_prefixes"],
            partition_key=DATE,
            instance=instance,
            resources=build_resources(),
        )
