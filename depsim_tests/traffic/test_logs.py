"""The log reader: every bad line lands in a named bucket, and no rejection carries its text."""

from __future__ import annotations

import gzip
import json

import pytest

from depsim_assets.traffic.logs import LogRecord, Rejected, Unreadable, iter_log
from depsim_demo.synth import MALFORMED_KINDS, demo_lines

DATE = "2025-03-01"
SECRET = "Maria Lopez maria.lopez@gmail.com"


def good(**extra):
    record = {
        "conversation_id": "c-1",
        "messages": [
            {"role": "user", "content": f"hi, I am {SECRET}"},
            {"role": "assistant", "content": "Hello!"},
        ],
    }
    record.update(extra)
    return json.dumps(record)


def msgs(*messages):
    return json.dumps({"conversation_id": "x", "messages": list(messages)})


U = {"role": "user", "content": SECRET}
A = {"role": "assistant", "content": f"reply {SECRET}"}

BAD_LINES = {
    "invalid_json": '{"messages": [{"role": "user", "content": "' + SECRET,
    "not_an_object": json.dumps([SECRET]),
    "no_messages": json.dumps({"conversation_id": "y", "text": SECRET}),
    "bad_message": msgs(U, SECRET, A),
    "unknown_role": msgs(U, {"role": "narrator", "content": SECRET}, A),
    "no_final_assistant": msgs(U, A, U),
    "empty_final_reply": msgs(U, {"role": "assistant", "content": "   "}),
    "orphan_tool_message": msgs(U, {"role": "tool", "tool_call_id": "c9", "content": SECRET}, A),
    "bad_field": json.dumps({"opted_out": "yes", "messages": [U, A]}),
}


def write_day(root, name, lines, date=DATE):
    folder = root / date
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_each_bad_line_gets_its_reason_and_a_text_free_detail(tmp_path):
    write_day(tmp_path, "a.jsonl", list(BAD_LINES.values()))
    out = list(iter_log(tmp_path, DATE))
    assert [o.reason for o in out] == list(BAD_LINES)
    for rej in out:
        assert isinstance(rej, Rejected)
        assert rej.source_file == f"{DATE}/a.jsonl"
        for word in ("Maria", "Lopez", "gmail", "narrator", "reply"):
            assert word not in rej.detail


def test_bad_message_shapes(tmp_path):
    lines = [
        msgs({"content": "no role"}, A),
        msgs({"role": "user", "content": 7}, A),
        msgs({"role": "user", "content": [{"type": "text", "text": 3}]}, A),
        msgs({"role": "user"}, A),
        msgs(U, {"role": "assistant", "content": None, "tool_calls": [{"id": "c"}]}, A),
    ]
    write_day(tmp_path, "a.jsonl", lines)
    assert [o.reason for o in iter_log(tmp_path, DATE)] == ["bad_message"] * len(lines)


def test_tool_only_final_turn_is_an_empty_reply(tmp_path):
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    write_day(tmp_path, "a.jsonl", [msgs(U, {"role": "assistant", "tool_calls": [call]})])
    [rej] = iter_log(tmp_path, DATE)
    assert rej.reason == "empty_final_reply"


def test_invalid_encoding(tmp_path):
    folder = tmp_path / DATE
    folder.mkdir()
    (folder / "a.jsonl").write_bytes(b'{"messages": "\xff\xfe"}\n' + good().encode() + b"\n")
    out = list(iter_log(tmp_path, DATE))
    assert out[0].reason == "invalid_encoding"
    assert isinstance(out[1], LogRecord)


def test_too_large_lines_are_skipped_without_losing_the_next_line(tmp_path):
    big = good(padding="x" * 5000)
    write_day(tmp_path, "a.jsonl", [big, good(conversation_id="c-2")])
    out = list(iter_log(tmp_path, DATE, max_line_bytes=1000))
    assert out[0].reason == "too_large" and out[0].line_number == 1
    assert isinstance(out[1], LogRecord) and out[1].conversation_id == "c-2"
    assert out[1].line_number == 2
    assert [type(o) for o in iter_log(tmp_path, DATE)] == [LogRecord, LogRecord]


def test_defaults_and_derived_ids(tmp_path):
    bare = json.dumps({"messages": [U, A]})
    write_day(tmp_path, "a.jsonl", [bare, "", "   ", good(user_id=42, source="api", model="m1")])
    first, second = iter_log(tmp_path, DATE)
    assert first.conversation_id.startswith("h-")
    assert (first.user_id, first.opted_out, first.source, first.model) == (
        None,
        False,
        "unknown",
        "unknown",
    )
    # Blank lines are skipped but still count for line numbers.
    assert second.line_number == 4
    assert (second.user_id, second.source, second.model) == ("42", "api", "m1")
    again = next(iter(iter_log(tmp_path, DATE)))
    assert again.conversation_id == first.conversation_id


def test_files_are_read_in_name_order_and_gzip_is_accepted(tmp_path):
    write_day(tmp_path, "b.jsonl", [good(conversation_id="b")])
    write_day(tmp_path, "a.jsonl", [good(conversation_id="a")])
    write_day(tmp_path, ".hidden.jsonl", [good(conversation_id="hidden")])
    write_day(tmp_path, "notes.txt", ["not a log"])
    with gzip.open(tmp_path / DATE / "c.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write(good(conversation_id="c") + "\n")
    out = list(iter_log(tmp_path, DATE))
    # notes.txt is not read, but named (never silently ignored); hidden files are skipped.
    [notes] = [o for o in out if isinstance(o, Unreadable)]
    assert (notes.source_file, notes.kind) == (f"{DATE}/notes.txt", "unsupported_name")
    out = [o for o in out if isinstance(o, LogRecord)]
    assert [r.conversation_id for r in out] == ["a", "b", "c"]
    assert out[2].source_file == f"{DATE}/c.jsonl.gz"


def test_missing_day_folder_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError) as exc:
        list(iter_log(tmp_path, "2025-01-09"))
    message = str(exc.value)
    assert "2025-01-09" in message and "\n" not in message


def test_dates_must_be_iso_days(tmp_path):
    for bad in ("../etc", "2025-13-01", "20250101"):
        with pytest.raises(ValueError):
            list(iter_log(tmp_path, bad))


def test_every_malformed_demo_line_is_quarantined_for_its_kind(tmp_path):
    lines = list(demo_lines(DATE, 1000, reply_fn=lambda prefix, cid: "Sure."))
    write_day(tmp_path, "part-00000.jsonl", [line.text for line in lines])
    out = list(iter_log(tmp_path, DATE))
    assert len(out) == len(lines)
    expected = {
        i + 1: MALFORMED_KINDS[line.kind]
        for i, line in enumerate(lines)
        if line.kind in MALFORMED_KINDS
    }
    got = {o.line_number: o.reason for o in out if isinstance(o, Rejected)}
    assert got == expected
    assert set(expected.values()) == set(MALFORMED_KINDS.values())
