"""One day end to end: counts reconcile, rows fit the tables, no planted PII gets out."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from depsim_assets.traffic.deid import DEID_VERSION, hash_user
from depsim_assets.traffic.eligibility import EligibilityConfig
from depsim_assets.traffic.logs import ROLES
from depsim_assets.traffic.pipeline import prefix_rows_from_sampled, run_sampling
from depsim_assets.traffic.synth import MALFORMED_KINDS, demo_lines, planted_pii, write_demo_log
from depsim_assets.warehouse import (
    CONVERSATION_PREFIXES,
    SAMPLED_CONVERSATIONS,
    SAMPLING_FUNNEL,
    SAMPLING_QUARANTINE,
)

DATE = "2025-03-01"
PER_DAY = 1200


def canned(prefix, cid):
    return "Sure, here is an answer."


@pytest.fixture(scope="module")
def log_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("logs")
    write_demo_log(root, [DATE], PER_DAY, reply_fn=canned)
    return root


@pytest.fixture(scope="module")
def everything(log_root):
    """A sample larger than the day: every eligible conversation goes through de-id."""
    return run_sampling(log_root, DATE, n=10 * PER_DAY, seed=1, salt="s")


def test_counts_reconcile_exactly(everything):
    c = everything.counts
    assert c["records_in"] == PER_DAY
    assert c["records_in"] == c["quarantined"] + sum(c["ineligible"].values()) + c["eligible"]
    assert (
        c["quarantined"] == sum(c["quarantine_reasons"].values()) == len(everything.quarantine_rows)
    )
    assert set(c["quarantine_reasons"]) == set(MALFORMED_KINDS.values())
    assert set(c["ineligible"]) == {"opted_out", "multimodal", "excluded_source"}
    assert c["sampled"] == c["eligible"] == len(everything.sampled_rows)
    assert c["pii_replaced"]["email"] > 0 and c["pii_replaced"]["person_name"] > 0


def test_funnel_rows_mirror_the_counts(everything):
    c = everything.counts
    rows = everything.funnel_rows
    by_stage = {}
    for row in rows:
        by_stage.setdefault(row["stage"], {})[row["reason"]] = row["n"]
    assert by_stage["records_in"] == {"": c["records_in"]}
    assert by_stage["quarantined"] == c["quarantine_reasons"]
    assert by_stage["ineligible"] == c["ineligible"]
    assert by_stage["eligible"] == {"": c["eligible"]} and by_stage["sampled"] == {"": c["sampled"]}


def test_rows_have_exactly_the_table_columns(everything):
    for rows, table in (
        (everything.sampled_rows, SAMPLED_CONVERSATIONS),
        (everything.prefix_rows, CONVERSATION_PREFIXES),
        (everything.quarantine_rows, SAMPLING_QUARANTINE),
        (everything.funnel_rows, SAMPLING_FUNNEL),
    ):
        assert rows and all(list(r) == table.column_names for r in rows), table.name


def test_no_planted_pii_survives_anywhere(everything):
    planted = planted_pii(DATE, PER_DAY, reply_fn=canned)
    prefixes = {r["conversation_id"]: r for r in everything.prefix_rows}
    checked = 0
    for row in everything.sampled_rows:
        cid = row["conversation_id"]
        prefix = prefixes[cid]
        # Written with ensure_ascii=False, and no planted value needs JSON escaping.
        decoded = "\n".join((row["messages_json"], prefix["prefix_json"], prefix["original_reply"]))
        for p in planted.get(cid, ()):
            checked += 1
            needle = rf"(?<![\w-]){re.escape(p.value)}(?![\w-])"
            assert not re.search(needle, decoded), (cid, p)
            digits = re.sub(r"\D", "", p.value)
            if p.kind == "payment_card":
                assert digits not in re.sub(r"[ -]", "", decoded), (cid, p)
    assert checked > 150
    everything_out = json.dumps(everything.quarantine_rows) + json.dumps(everything.funnel_rows)
    for values in planted.values():
        for p in values:
            assert p.value not in everything_out


def test_quarantine_details_carry_no_record_text(log_root, everything):
    lines = (log_root / DATE / "part-00000.jsonl").read_text(encoding="utf-8").splitlines()
    for row in everything.quarantine_rows:
        raw = lines[row["line_number"] - 1]
        values = set(re.findall(r':"([^"\\]{6,})', raw)) - ROLES
        assert not any(v in row["detail"] for v in values), row
        assert row["source_file"] == f"{DATE}/part-00000.jsonl"


def test_sampled_rows_hold_hashes_and_provenance(everything):
    line = next(
        json.loads(x.text) for x in demo_lines(DATE, PER_DAY, reply_fn=canned) if x.kind == "ok"
    )
    row = next(
        r for r in everything.sampled_rows if r["conversation_id"] == line["conversation_id"]
    )
    assert row["user_hash"] == hash_user(line["user_id"], "s")
    assert line["user_id"] not in json.dumps(row)
    assert row["production_model"] == "sim-production"
    assert row["deid_version"] == DEID_VERSION and row["sample_seed"] == 1
    assert row["sampling_weight"] == 1.0
    assert row["n_messages"] == len(line["messages"])
    assert row["has_tool_calls"] == any(m.get("tool_calls") for m in line["messages"])
    assert json.loads(row["pii_counts_json"]) is not None
    no_id = [r for r in everything.sampled_rows if r["conversation_id"].startswith("h-")]
    assert no_id and all(r["user_hash"] is None and r["source"] == "unknown" for r in no_id)


def test_prefix_rows_follow_from_sampled_rows(everything):
    assert prefix_rows_from_sampled(everything.sampled_rows) == everything.prefix_rows
    for row in everything.prefix_rows:
        assert row["prefix_hash"] == hashlib.sha256(row["prefix_json"].encode()).hexdigest()
        assert row["original_reply"] == "Sure, here is an answer."
        assert row["n_prefix_messages"] == len(json.loads(row["prefix_json"]))
    agentic = [r for r in everything.prefix_rows if '"role":"tool"' in r["prefix_json"]]
    assert len(agentic) > 50


def test_sample_is_seeded_weighted_and_independent_of_file_layout(log_root, tmp_path):
    a = run_sampling(log_root, DATE, n=100, seed=9, salt="s")
    lines = (log_root / DATE / "part-00000.jsonl").read_text(encoding="utf-8").splitlines()
    folder = tmp_path / DATE
    folder.mkdir()
    half = len(lines) // 2
    (folder / "a.jsonl").write_text("\n".join(lines[half:][::-1]) + "\n", encoding="utf-8")
    (folder / "b.jsonl").write_text("\n".join(lines[:half]) + "\n", encoding="utf-8")
    b = run_sampling(tmp_path, DATE, n=100, seed=9, salt="s")
    ids_a = [r["conversation_id"] for r in a.sampled_rows]
    assert ids_a == [r["conversation_id"] for r in b.sampled_rows]
    assert len(ids_a) == 100
    assert a.sampled_rows[0]["sampling_weight"] == pytest.approx(a.counts["eligible"] / 100)
    c = run_sampling(log_root, DATE, n=100, seed=10, salt="s")
    assert set(ids_a) != {r["conversation_id"] for r in c.sampled_rows}
    frac = run_sampling(log_root, DATE, fraction=0.25, seed=9, salt="s")
    assert 0.15 < frac.counts["sampled"] / frac.counts["eligible"] < 0.35


def test_duplicate_ids_are_quarantined_after_the_first(tmp_path):
    folder = tmp_path / DATE
    folder.mkdir()
    line = json.dumps(
        {
            "conversation_id": "dup",
            "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
        }
    )
    (folder / "a.jsonl").write_text(f"{line}\n{line}\n", encoding="utf-8")
    result = run_sampling(tmp_path, DATE, n=5, seed=1, salt="s")
    assert [r["conversation_id"] for r in result.sampled_rows] == ["dup"]
    [q] = result.quarantine_rows
    assert (q["reason"], q["line_number"]) == ("duplicate_id", 2)
    assert result.counts["records_in"] == 2 and result.counts["quarantine_reasons"] == {
        "duplicate_id": 1
    }


def test_eligibility_config_is_applied(log_root):
    result = run_sampling(
        log_root,
        DATE,
        n=10,
        seed=1,
        salt="s",
        eligibility=EligibilityConfig(exclude_sources=(), exclude_models=("sim-production",)),
    )
    assert result.counts["eligible"] == 0 and result.sampled_rows == []
    assert "excluded_model" in result.counts["ineligible"]
    assert "excluded_source" not in result.counts["ineligible"]


def test_missing_day_is_an_error(log_root):
    with pytest.raises(FileNotFoundError, match="2030-01-01"):
        run_sampling(log_root, "2030-01-01", n=5, seed=1, salt="s")
