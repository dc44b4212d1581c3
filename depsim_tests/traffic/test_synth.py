"""The demo log: reproducible to the byte, and shaped like the traffic the pipeline expects."""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections import Counter

import pytest

from depsim_assets.traffic import deid
from depsim_demo.synth import (
    MALFORMED_KINDS,
    PRODUCTION_MODEL,
    demo_lines,
    planted_pii,
    write_demo_log,
)

DATE = "2025-03-01"


def canned(prefix, cid):
    return "Sure, here is an answer."


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_arguments_write_byte_identical_files(tmp_path):
    a = write_demo_log(tmp_path / "a", [DATE, "2025-03-02"], 500, seed=3, reply_fn=canned)
    b = write_demo_log(tmp_path / "b", [DATE, "2025-03-02"], 500, seed=3, reply_fn=canned)
    assert {d: _digest(p) for d, p in a.items()} == {d: _digest(p) for d, p in b.items()}
    assert a[DATE] == tmp_path / "a" / DATE / "part-00000.jsonl"
    # Days differ from each other, and another seed gives another log.
    assert _digest(a[DATE]) != _digest(a["2025-03-02"])
    c = write_demo_log(tmp_path / "c", [DATE], 500, seed=4, reply_fn=canned)
    assert _digest(c[DATE]) != _digest(a[DATE])


def test_no_temporary_file_is_left_behind(tmp_path):
    write_demo_log(tmp_path, [DATE], 50, reply_fn=canned)
    assert sorted(p.name for p in (tmp_path / DATE).iterdir()) == ["part-00000.jsonl"]


def test_planted_data_does_not_depend_on_the_reply_function():
    other = planted_pii(DATE, 400, reply_fn=lambda prefix, cid: f"Reply to {len(prefix)}.")
    mine = planted_pii(DATE, 400, reply_fn=canned)
    keep = {cid for cid in mine if cid.startswith("conv-")}
    assert {c: mine[c] for c in keep} == {c: other[c] for c in keep if c in other}


def test_the_mix_of_records_matches_the_brief():
    lines = list(demo_lines(DATE, 4000, reply_fn=canned))
    kinds = Counter(line.kind for line in lines)
    # One malformed line per 200, cycling through every malformed kind.
    assert {k: kinds[k] for k in MALFORMED_KINDS} == {k: 4 for k in MALFORMED_KINDS}
    assert 40 <= kinds["opted_out"] <= 130
    assert 40 <= kinds["multimodal"] <= 130
    assert 15 <= kinds["internal_test"] <= 70
    assert kinds["no_id"] >= 3

    good = [json.loads(line.text) for line in lines if line.kind not in MALFORMED_KINDS]
    with_tools = sum(any(m["role"] == "tool" for m in r["messages"]) for r in good)
    assert 0.10 <= with_tools / len(good) <= 0.20
    user_turns = Counter(sum(m["role"] == "user" for m in r["messages"]) for r in good)
    assert set(user_turns) >= {1, 2, 3}
    assert all(r["messages"][-1]["role"] == "assistant" for r in good)
    assert all(r["model"] == PRODUCTION_MODEL for r in good)
    ids = [r["conversation_id"] for r in good if "conversation_id" in r]
    assert len(ids) == len(set(ids))
    assert all(i.startswith(f"conv-{DATE}-") for i in ids)
    assert all(
        r["created_at"].startswith(f"{DATE}T") and r["created_at"].endswith("Z") for r in good
    )


def test_planted_pii_is_realistic_and_varied():
    planted = [p for ps in planted_pii(DATE, 3000, reply_fn=canned).values() for p in ps]
    kinds = Counter(p.kind for p in planted)
    for kind in (
        deid.EMAIL,
        deid.PHONE,
        deid.PAYMENT_CARD,
        deid.IPV4,
        deid.IPV6,
        deid.PERSON_NAME,
        deid.STREET_ADDRESS,
    ):
        assert kinds[kind] >= 10, kind
    for p in planted:
        if p.kind == deid.PAYMENT_CARD:
            assert deid.luhn_valid(p.value)
        elif p.kind in (deid.IPV4, deid.IPV6):
            addr = ipaddress.ip_address(p.value)
            assert not any(addr in ipaddress.ip_network(n) for n in _DOC_NETS)
        elif p.kind == deid.EMAIL:
            assert p.value.rsplit("@", 1)[1] not in deid.SURROGATE_EMAIL_DOMAINS
    phones = {p.value for p in planted if p.kind == deid.PHONE}
    assert any(v.startswith("+44") for v in phones) and any(v.startswith("(") for v in phones)


_DOC_NETS = ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")


def test_default_reply_comes_from_the_simulator():
    pytest.importorskip("depsim_assets.sim.personas")
    first = next(iter(demo_lines(DATE, 1)))
    second = next(iter(demo_lines(DATE, 1)))
    record = json.loads(first.text)
    assert first.text == second.text
    assert record["messages"][-1]["role"] == "assistant"
    assert record["messages"][-1]["content"]
