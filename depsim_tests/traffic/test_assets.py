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
from depsim_assets.traffic.synth import planted_pii, write_demo_log
from depsim_assets.warehouse import SAMPLED_CONVERSATIONS, replace_partition

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
]


def canned(prefix, cid):
    return "Sure, here is an answer."


@pytest.fixture
def demo_day(depsim_home):
    write_demo_log(config.log_root(), [DATE], PER_DAY, reply_fn=canned)
    return depsim_home


def test_depsim_sample_json_is_exactly_the_issue_shape_and_reconciles(demo_day, capsys):
    assert cli.main(["sample", "--date", DATE, "--size", "120", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == KEYS
    assert out["records_in"] == PER_DAY
    ineligible = sum(out["ineligible"].values())
    assert out["records_in"] == out["quarantined"] + ineligible + out["eligible"]
    assert out["quarantined"] == sum(out["quarantine_reasons"].values()) > 0
    assert out["sampled"] == 120 and out["eligible"] > 120
    with duckdb.connect(str(config.warehouse_path()), read_only=True) as conn:
        rows = conn.execute(
            "SELECT pii_counts_json, sampling_weight FROM sampled_conversations"
        ).fetchall()
        n_prefixes = conn.execute("SELECT count(*) FROM conversation_prefixes").fetchone()[0]
    assert n_prefixes == 120 and len(rows) == 120
    # pii_replaced is the sum of the per-row counts; weights are eligible / sampled.
    total: dict[str, int] = {}
    for raw, weight in rows:
        for k, v in json.loads(raw).items():
            total[k] = total.get(k, 0) + v
        assert weight == pytest.approx(out["eligible"] / 120)
    assert out["pii_replaced"] == dict(sorted(total.items()))


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


def test_residue_check_passes_on_demo_data_and_fails_on_a_planted_leak(demo_day, instance):
    result = _materialize(instance)
    [evaluation] = [
        e for e in result.get_asset_check_evaluations() if e.check_name == "no_residual_pii"
    ]
    assert evaluation.passed and evaluation.metadata["rows_scanned"].value > 300
    # A leaked row written straight into the table: an email and a name in context.
    planted = next(v for vs in planted_pii(DATE, PER_DAY, reply_fn=canned).values() for v in vs)
    with duckdb.connect(str(config.warehouse_path())) as conn:
        rows = conn.execute("SELECT * FROM sampled_conversations").df()
        leaked = rows.iloc[0].to_dict()
        leaked["conversation_id"] = "leak-1"
        leaked["messages_json"] = json.dumps(
            [
                {"role": "user", "content": f"I am Maria Lopez, write to me: {planted.value}"},
                {"role": "assistant", "content": "Will do."},
            ]
        )
        frame = pd.concat([rows, pd.DataFrame([leaked])], ignore_index=True)
        replace_partition(conn, SAMPLED_CONVERSATIONS, frame, {"traffic_date": DATE})
        failed = residual_pii_result(conn, DATE)
    assert not failed.passed
    hits = failed.metadata["first_hits"].value
    assert {h["conversation_id"] for h in hits} == {"leak-1"}
    assert planted.value not in json.dumps(failed.metadata["first_hits"].value)


def test_a_broken_deidentifier_is_caught_by_the_check_and_blocks_prefixes(
    demo_day, instance, monkeypatch
):
    def identity(self, messages, conversation_id, *, surrogates=None):
        return messages, {}

    monkeypatch.setattr(deid_module.Deidentifier, "deidentify_messages", identity)
    result = _materialize(instance)
    [evaluation] = [
        e for e in result.get_asset_check_evaluations() if e.check_name == "no_residual_pii"
    ]
    assert not evaluation.passed
    hits = evaluation.metadata["hits_by_type"].value
    assert hits.get("email", 0) > 0 and hits.get("person_name", 0) > 0
    materialized = {
        e.asset_key.to_user_string() for e in result.get_asset_materialization_events()
    }
    assert materialized == {"sampled_conversations"}
