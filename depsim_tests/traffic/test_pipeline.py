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
from depsim_assets.warehouse import (
    CONVERSATION_PREFIXES,
    SAMPLED_CONVERSATIONS,
    SAMPLING_FUNNEL,
    SAMPLING_QUARANTINE,
    SAMPLING_STATUS,
)
from depsim_demo.synth import MALFORMED_KINDS, demo_lines, planted_pii, write_demo_log

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
    # The quarantine table holds read-time rejects and residual-PII quarantines alike.
    assert c["quarantined"] == sum(c["quarantine_reasons"].values())
    assert c["quarantined"] + c["residual_quarantined"] == len(everything.quarantine_rows)
    assert set(c["quarantine_reasons"]) == set(MALFORMED_KINDS.values())
    assert set(c["ineligible"]) == {"opted_out", "multimodal", "excluded_source"}
    # Every eligible conversation is drawn; each drawn one is kept or quarantined as residual.
    assert c["sampled"] == c["eligible"] == c["kept"] + c["residual_quarantined"]
    assert c["kept"] == len(everything.sampled_rows)
    assert everything.passed and everything.status_row["kept"] == c["kept"]
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
    assert by_stage["residual_quarantined"] == {"residual_pii": c["residual_quarantined"]}
    assert by_stage["kept"] == {"": c["kept"]}


def test_rows_have_exactly_the_table_columns(everything):
    for rows, table in (
        (everything.sampled_rows, SAMPLED_CONVERSATIONS),
        (everything.prefix_rows, CONVERSATION_PREFIXES),
        (everything.quarantine_rows, SAMPLING_QUARANTINE),
        (everything.funnel_rows, SAMPLING_FUNNEL),
        ([everything.status_row], SAMPLING_STATUS),
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


# --- stratification, fractions and metadata exclusions ------------------------------------------


def _write_strata_day(root, sizes, date=DATE):
    folder = root / date
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for tier, n in sizes.items():
        for i in range(n):
            record = {
                "conversation_id": f"{tier}-{i}",
                "metadata": {"tier": tier, "eval": i % 10 == 0},
                "messages": [
                    {"role": "user", "content": "hello"},
                    {"role": "assistant", "content": "hi"},
                ],
            }
            lines.append(json.dumps(record))
    (folder / "a.jsonl").write_text("\n".join(lines) + "\n")


def test_stratified_count_is_allocated_proportionally_with_per_stratum_weights(tmp_path):
    from depsim_assets.traffic.pipeline import allocate

    sizes = {"free": 700, "plus": 250, "team": 50}
    _write_strata_day(tmp_path, sizes)
    result = run_sampling(tmp_path, DATE, n=101, seed=3, salt="s", stratify_by="metadata.tier")
    by_stratum: dict[str, list[dict]] = {}
    for row in result.sampled_rows:
        by_stratum.setdefault(row["stratum"], []).append(row)
    # Largest remainder of 101 * (0.70, 0.25, 0.05) = 70.7, 25.25, 5.05 -> 71, 25, 5.
    assert {h: len(r) for h, r in by_stratum.items()} == {"free": 71, "plus": 25, "team": 5}
    assert allocate(sizes, 101) == {"free": 71, "plus": 25, "team": 5}
    for tier, rows in by_stratum.items():
        assert {r["sampling_weight"] for r in rows} == {sizes[tier] / len(rows)}
        # Within a stratum the sample is its bottom-k by the seeded key: check independently.
        ids = [f"{tier}-{i}" for i in range(sizes[tier])]
        expected = sorted(ids, key=lambda c: hashlib.sha256(f"3|{c}".encode()).digest()[:8])
        assert [r["conversation_id"] for r in rows] == expected[: len(rows)]
    assert sum(r["sampling_weight"] for r in result.sampled_rows) == pytest.approx(1000)
    assert result.counts["strata"]["team"] == {"eligible": 50, "sampled": 5}


def test_fraction_sampling_is_reproducible_and_about_the_fraction(tmp_path):
    _write_strata_day(tmp_path, {"free": 2000})
    a = run_sampling(tmp_path, DATE, fraction=0.2, seed=9, salt="s")
    b = run_sampling(tmp_path, DATE, fraction=0.2, seed=9, salt="s")
    ids = [r["conversation_id"] for r in a.sampled_rows]
    assert ids == [r["conversation_id"] for r in b.sampled_rows]
    # Bernoulli(0.2) of 2000: mean 400, sd ~17.9; 5 sd either way.
    assert 310 < len(ids) < 490
    assert all(r["sampling_weight"] == pytest.approx(2000 / len(ids)) for r in a.sampled_rows)


def test_metadata_exclusions_are_counted_before_sampling(tmp_path):
    _write_strata_day(tmp_path, {"free": 100, "plus": 40})
    config = EligibilityConfig(exclude_metadata={"tier": ("plus",), "eval": ("true",)})
    counts = run_sampling(tmp_path, DATE, n=1000, seed=1, salt="s", eligibility=config).counts
    # 40 plus conversations, and eval=true on every 10th free one (10 of 100).
    assert counts["ineligible"] == {"excluded_metadata": 50}
    assert counts["eligible"] == counts["sampled"] == 90


def test_unknown_stratification_field_is_refused(tmp_path):
    _write_strata_day(tmp_path, {"free": 3})
    with pytest.raises(ValueError, match="stratify_by"):
        run_sampling(tmp_path, DATE, n=1, seed=1, salt="s", stratify_by="colour")


def test_deid_workers_rule_by_cpus_and_sample_size(monkeypatch):
    """One process for small samples; two on two CPUs from PARALLEL_MIN_TWO_CPUS; one per CPU
    (at most 4) on bigger machines from PARALLEL_MIN; never more processes than chunks."""
    from depsim_assets.traffic import pipeline as pl

    monkeypatch.delenv(pl.DEID_WORKERS_ENV, raising=False)
    for cpus, jobs, expected in [
        (1, 200_000, 1),
        (2, pl.PARALLEL_MIN_TWO_CPUS - 1, 1),
        (2, pl.PARALLEL_MIN_TWO_CPUS, 2),
        (8, pl.PARALLEL_MIN - 1, 1),
        (8, pl.PARALLEL_MIN, 4),
    ]:
        monkeypatch.setattr(pl.os, "sched_getaffinity", lambda _pid, n=cpus: set(range(n)))
        assert pl.deid_workers(None, jobs) == expected, (cpus, jobs)
    monkeypatch.setenv(pl.DEID_WORKERS_ENV, "3")
    assert pl.deid_workers(None, 10_000) == 3
    assert pl.deid_workers(None, 600) == 2  # 600 jobs are two chunks of 500
    monkeypatch.setenv(pl.DEID_WORKERS_ENV, "many")
    with pytest.raises(ValueError, match="whole number"):
        pl.deid_workers(None, 10_000)
