"""Leaks: the adversarial corpus through the real sampling path, a leak planted past the
de-identifier, and the bypass of a failed day from the Dagster CLI.

Nothing planted may be readable (verbatim, case-folded or without separators) in a row that is
written; a conversation that still holds PII after de-identification is quarantined, never
written; ``conversation_prefixes`` refuses a day whose sampling did not pass, however it is
launched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from depsim_assets import cli, config
from depsim_assets.traffic import deid as deid_module
from depsim_assets.traffic.pipeline import RESIDUAL_PII, run_sampling
from depsim_demo.synth import write_demo_log
from depsim_tests.traffic.adversarial_corpus import (
    FUZZY_KINDS,
    adversarial_plants,
    adversarial_records,
    leaked,
    output_text,
)

DATE = "2025-06-01"
SALT = "leak-test-salt-0123456789abcdef"


def _write_day(root: Path, records: list[dict]) -> None:
    (root / DATE).mkdir(parents=True)
    with open(root / DATE / "part-00000.jsonl", "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def _written_text(result) -> dict[str, str]:
    """Everything a written row of each conversation carries, JSON decoded, keys included."""
    out: dict[str, str] = {}
    for row in result.sampled_rows:
        out[row["conversation_id"]] = output_text(
            [json.loads(row["messages_json"]), row["conversation_id"], row["source"],
             row["production_model"]]
        )  # fmt: skip
    for row in result.prefix_rows:
        out[row["conversation_id"]] += "\n" + output_text(
            [json.loads(row["prefix_json"]), row["original_reply"]]
        )
    return out


def _reconciles(result) -> None:
    c = result.counts
    assert c["records_in"] == c["quarantined"] + sum(c["ineligible"].values()) + c["eligible"]
    assert c["kept"] + c["residual_quarantined"] == c["sampled"]
    written = c["kept"] if result.passed else 0
    assert written == len(result.sampled_rows) == len(result.prefix_rows)
    residual = [r for r in result.quarantine_rows if r["reason"] == RESIDUAL_PII]
    assert len(residual) == c["residual_quarantined"]


@pytest.fixture(scope="module")
def adversarial(tmp_path_factory):
    root = tmp_path_factory.mktemp("adv")
    _write_day(root, adversarial_records())
    # Every conversation is drawn and the threshold is out of the way: this measures what
    # gets written, conversation by conversation.
    return run_sampling(root, DATE, n=10_000, seed=1, salt=SALT, max_residual_share=1.0)


def test_no_planted_value_is_in_any_written_row(adversarial):
    _reconciles(adversarial)
    written = _written_text(adversarial)
    plants = adversarial_plants()
    assert len({p.value for p in plants}) >= 80
    leaks = [
        (p.kind, p.placement, p.conversation_id)
        for p in plants
        if p.conversation_id in written and leaked(p, written[p.conversation_id])
    ]
    # Structured values: none, ever. Names and addresses in free prose are the
    # de-identifier's (the scan finds names only after an introduction or in a Name column):
    # held to the 95% replacement, and none has leaked in our runs.
    structured = [leak for leak in leaks if leak[0] not in FUZZY_KINDS]
    assert structured == []
    fuzzy = [p for p in plants if p.kind in FUZZY_KINDS]
    assert len(leaks) - len(structured) <= 0.05 * len(fuzzy), leaks
    # Quarantine details say where and what type, never the value.
    details = json.dumps(adversarial.quarantine_rows, ensure_ascii=False)
    assert not [p.kind for p in plants if len(p.value) >= 6 and p.value in details]


def test_a_leak_planted_past_the_deidentifier_is_quarantined_not_written(tmp_path, monkeypatch):
    records = adversarial_records()[:40]
    _write_day(tmp_path, records)
    target = records[7]["conversation_id"]
    planted = "IBAN GB82 WEST 1234 5698 7654 32, call +49 1512 3456789"
    real = deid_module.Deidentifier.deidentify_messages

    def leaky(self, messages, conversation_id, *, surrogates=None):
        out, counts = real(self, messages, conversation_id, surrogates=surrogates)
        if conversation_id == target:
            # The de-identifier "misses" two values in this one conversation.
            out = [*out, {"role": "user", "content": planted}]
        return out, counts

    monkeypatch.setattr(deid_module.Deidentifier, "deidentify_messages", leaky)
    # The corpus holds other leaks the scan quarantines too: a high threshold keeps the day.
    result = run_sampling(tmp_path, DATE, n=1000, seed=1, salt=SALT, max_residual_share=0.5)
    _reconciles(result)
    assert result.passed and result.counts["residual_quarantined"] >= 1
    assert target not in {r["conversation_id"] for r in result.sampled_rows}
    [row] = [
        r
        for r in result.quarantine_rows
        if r["reason"] == RESIDUAL_PII and r["line_number"] == 8
    ]
    assert "iban" in row["detail"] and "phone" in row["detail"]
    assert f"messages[{len(records[7]['messages'])}].content" in row["detail"]
    assert "GB82" not in row["detail"] and "3456789" not in row["detail"]
    everything = json.dumps([result.sampled_rows, result.prefix_rows, result.funnel_rows])
    assert "GB82 WEST" not in everything and "1512 3456789" not in everything


def test_a_day_over_the_threshold_writes_no_sample(tmp_path):
    _write_day(tmp_path, adversarial_records()[:60])

    class Leaky(deid_module.Deidentifier):
        def deidentify_messages(self, messages, conversation_id, *, surrogates=None):
            return messages, {}

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(deid_module, "Deidentifier", Leaky)
        mp.setattr("depsim_assets.traffic.pipeline.Deidentifier", Leaky)
        # A salt of its own: the pipeline keeps one de-identifier per salt between days, and an
        # earlier test's (a real one) must not stand in for the leaky one.
        result = run_sampling(tmp_path, DATE, n=1000, seed=1, salt=SALT + "-leaky")
    c = result.counts
    assert not result.passed and result.sampled_rows == [] and result.prefix_rows == []
    assert c["residual_quarantined"] > 0.5 * c["sampled"]
    assert result.status_row["reason"].startswith("failed: ")
    # The funnel and the quarantine are still there to say what happened.
    stages = {r["stage"] for r in result.funnel_rows}
    assert {"sampled", "residual_quarantined", "kept"} <= stages


@pytest.mark.e2e
def test_the_dagster_cli_cannot_bypass_a_failed_day(depsim_home, monkeypatch):
    write_demo_log(config.log_root(), [DATE], 200, reply_fn=lambda prefix, cid: "Sure.")
    # A threshold no day can meet: the day fails on whatever residue the scan finds. With
    # the demo's clean output that is none, so require zero and plant one leak per call.
    monkeypatch.setenv("DEPSIM_MAX_RESIDUAL_SHARE", "0")
    real = deid_module.Deidentifier.deidentify_messages

    def leaky(self, messages, conversation_id, *, surrogates=None):
        out, counts = real(self, messages, conversation_id, surrogates=surrogates)
        return [*out, {"role": "user", "content": "my BSN is 111222333"}], counts

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(deid_module.Deidentifier, "deidentify_messages", leaky)
        assert cli.main(["sample", "--date", DATE, "--size", "50"]) != 0
    with duckdb.connect(str(config.warehouse_path()), read_only=True) as conn:
        passed, reason = conn.execute(
            "SELECT passed, reason FROM sampling_status WHERE traffic_date = ?", [DATE]
        ).fetchone()
        written = conn.execute("SELECT count(*) FROM sampled_conversations").fetchone()[0]
    assert not passed and reason.startswith("failed: ") and written == 0
    # The bypass the issue found: conversation_prefixes alone, from Dagster's own CLI.
    env = {**os.environ, "DAGSTER_HOME": str(config.dagster_home())}
    config.dagster_home().mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m",
         "depsim_assets.definitions", "--select", "conversation_prefixes", "--partition", DATE],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert f"conversation_prefixes refuses {DATE}: sampling did not pass" in output
    with duckdb.connect(str(config.warehouse_path()), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM conversation_prefixes").fetchone()[0] == 0
