"""Ingest: every format round-trips into the production log; bad records are quarantined."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from depsim_assets.traffic import ingest
from depsim_assets.traffic.ingest import UnreadableFile, ingest_files
from depsim_assets.traffic.logs import LogRecord, Rejected, iter_log
from depsim_assets.traffic.pipeline import run_sampling

DATE = "2025-03-01"
OTHER = "2025-03-02"

SYSTEM = "You are a helpful assistant. Café ☕ emoji 🚀."
CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": json.dumps({"city": "Lisbon"})},
}
# The canonical conversations every fixture encodes, in OpenAI chat form.
TOOLS = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "Do I need an umbrella in Lisbon?"},
    {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "call_1", "content": '{"rain_mm": 0.4}'},
    {"role": "assistant", "content": "A light one: 0.4 mm of rain is forecast."},
]
IMAGE_URL = "https://img.example.net/u/cat.jpg"
IMAGE = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": IMAGE_URL}},
        ],
    },
    {"role": "assistant", "content": "A cat on a windowsill."},
]
PLAIN = [
    {"role": "user", "content": "Explain compound interest."},
    {"role": "assistant", "content": "Interest earned on interest."},
]


def write_jsonl(path, records):
    with open(path, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(rec if isinstance(rec, str) else json.dumps(rec, ensure_ascii=False))
            fh.write("\n")
    return path


def read_day(root, date):
    return list(iter_log(root, date))


def by_id(items):
    return {i.conversation_id: i for i in items if isinstance(i, LogRecord)}


# --- writers of each format, from the canonical form ----------------------------------------


def to_sharegpt(cid, messages):
    turns, images, system = [], [], None
    for m in messages:
        if m["role"] == "system":
            system = m["content"]
        elif m["role"] == "assistant" and m.get("tool_calls"):
            for c in m["tool_calls"]:
                fn = c["function"]
                call = {"name": fn["name"], "arguments": json.loads(fn["arguments"])}
                turns.append({"from": "function_call", "value": json.dumps(call)})
        elif m["role"] == "tool":
            turns.append({"from": "observation", "value": m["content"]})
        else:
            content = m["content"]
            if isinstance(content, list):
                text = ""
                for p in content:
                    if p["type"] == "text":
                        text += p["text"]
                    else:
                        text += "<image>"
                        images.append(p["image_url"]["url"])
                content = text
            turns.append({"from": "human" if m["role"] == "user" else "gpt", "value": content})
    rec = {"id": cid, "conversations": turns}
    if system:
        rec["system"] = system
    if images:
        rec["images"] = images
    return rec


def to_anthropic_messages(cid, messages):
    out, system = [], None
    for m in messages:
        if m["role"] == "system":
            system = m["content"]
        elif m["role"] == "assistant" and m.get("tool_calls"):
            blocks = [
                {
                    "type": "tool_use",
                    "id": c["id"],
                    "name": c["function"]["name"],
                    "input": json.loads(c["function"]["arguments"]),
                }
                for c in m["tool_calls"]
            ]
            out.append({"role": "assistant", "content": blocks})
        elif m["role"] == "tool":
            block = {"type": "tool_result", "tool_use_id": m["tool_call_id"]}
            block["content"] = m["content"]
            out.append({"role": "user", "content": [block]})
        elif isinstance(m["content"], list):
            blocks = []
            for p in m["content"]:
                if p["type"] == "text":
                    blocks.append({"type": "text", "text": p["text"]})
                else:
                    src = {"type": "url", "url": p["image_url"]["url"]}
                    blocks.append({"type": "image", "source": src})
            out.append({"role": m["role"], "content": blocks})
        else:
            out.append({"role": m["role"], "content": m["content"]})
    rec = {"conversation_id": cid, "messages": out}
    if system:
        rec["system"] = system
    return rec


def to_transcript(messages):
    names = {"user": "Human", "assistant": "Assistant"}
    return "".join(f"\n\n{names[m['role']]}: {m['content']}" for m in messages)


def assert_canonical(records):
    assert records["tools"].messages == TOOLS
    assert records["image"].messages == IMAGE
    assert records["plain"].messages == PLAIN


# --- round trips -------------------------------------------------------------------------------


def test_openai_jsonl_round_trips_and_timestamps_pick_the_day(tmp_path):
    src = write_jsonl(
        tmp_path / "openai.jsonl",
        [
            {"conversation_id": "tools", "messages": TOOLS, "user_id": "u1", "model": "m"},
            {"conversation_id": "image", "messages": IMAGE, "metadata": {"tier": "free"}},
            {"conversation_id": "plain", "messages": PLAIN, "created_at": f"{OTHER}T23:59:59Z"},
            {"conversation_id": "late", "messages": PLAIN, "created_at": 1740873600},  # 03-02 UTC
            {"conversation_id": "tz", "messages": PLAIN, "created_at": "2025-03-02T01:00:00+02:00"},
        ],
    )
    result = ingest_files([src], date=DATE, log_root=tmp_path / "log")
    assert (result.records_in, result.written, result.quarantined) == (5, 5, 0)
    assert result.days == {DATE: 3, OTHER: 2}
    day1, day2 = by_id(read_day(tmp_path / "log", DATE)), by_id(read_day(tmp_path / "log", OTHER))
    assert set(day1) == {"tools", "image", "tz"} and set(day2) == {"plain", "late"}
    assert_canonical({**day1, **day2})
    assert day1["tools"].user_id == "u1" and day1["tools"].model == "m"
    assert day1["image"].metadata == {"tier": "free"}
    assert day1["tz"].created_at == "2025-03-01T23:00:00Z"
    # Quarantine and duplicate rows point at the file the user gave.
    assert day1["tools"].source_file == str(src) and day1["tools"].line_number == 1


def test_sharegpt_json_array_round_trips_with_tool_turns_and_images(tmp_path, monkeypatch):
    # A tiny read chunk makes elements and multi-byte characters straddle buffer edges.
    monkeypatch.setattr(ingest, "_READ_CHUNK", 7)
    records = [to_sharegpt(cid, m) for cid, m in (("tools", TOOLS), ("image", IMAGE))]
    records.append(to_sharegpt("plain", PLAIN))
    src = tmp_path / "share.json"
    src.write_text(json.dumps(records, indent=2, ensure_ascii=False), encoding="utf-8")
    result = ingest_files([src], date=DATE, log_root=tmp_path / "log")
    assert (result.records_in, result.written) == (3, 3)
    assert_canonical(by_id(read_day(tmp_path / "log", DATE)))


def test_sharegpt_jsonl_is_detected_too(tmp_path):
    src = write_jsonl(tmp_path / "share.jsonl", [to_sharegpt("plain", PLAIN)])
    result = ingest_files([src], date=DATE, fmt="sharegpt", log_root=tmp_path / "log")
    assert result.written == 1
    assert by_id(read_day(tmp_path / "log", DATE))["plain"].messages == PLAIN


def test_anthropic_transcripts_and_message_blocks_round_trip(tmp_path):
    src = write_jsonl(
        tmp_path / "hh.jsonl",
        [
            to_anthropic_messages("tools", TOOLS),
            to_anthropic_messages("image", IMAGE),
            {"id": "plain", "chosen": to_transcript(PLAIN), "rejected": "\n\nHuman: x"},
            {"id": "t2", "transcript": "Human: hi\n\nAssistant: hello"},
        ],
    )
    result = ingest_files([src], date=DATE, fmt="anthropic", log_root=tmp_path / "log")
    assert (result.records_in, result.written) == (4, 4)
    records = by_id(read_day(tmp_path / "log", DATE))
    assert_canonical(records)
    assert records["t2"].messages == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]


def test_parquet_with_struct_messages_and_json_text_messages(tmp_path):
    structs = tmp_path / "structs.parquet"
    rows = [
        {"conversation_id": "tools", "messages": TOOLS, "opted_out": False},
        {"conversation_id": "plain", "messages": PLAIN, "opted_out": True},
    ]
    pq.write_table(pa.Table.from_pylist(rows), structs)
    text = tmp_path / "text.parquet"
    table = pa.table(
        {
            "conversation_id": ["image", "bad"],
            "messages": [json.dumps(IMAGE), "{not json"],
            "created_at": pa.array([None, None], pa.timestamp("s")),
        }
    )
    pq.write_table(table, text)
    result = ingest_files([structs, text], date=DATE, log_root=tmp_path / "log")
    assert (result.records_in, result.written, result.quarantined) == (4, 3, 1)
    items = read_day(tmp_path / "log", DATE)
    records = by_id(items)
    assert_canonical(records)
    assert records["plain"].opted_out is True
    [rej] = [i for i in items if isinstance(i, Rejected)]
    assert (rej.source_file, rej.line_number, rej.reason) == (str(text), 2, "invalid_json")


# --- quarantine --------------------------------------------------------------------------------

SECRET = "Maria Lopez maria.lopez@gmail.com"
U = {"role": "user", "content": SECRET}
A = {"role": "assistant", "content": "ok " + SECRET}
BAD = {
    "invalid_json": '{"messages": [' + json.dumps(U),
    "not_an_object": json.dumps([SECRET]),
    "no_messages": json.dumps({"id": "x", "text": SECRET}),
    "unknown_role": json.dumps({"conversations": [{"from": "narrator", "value": SECRET}]}),
    "no_final_assistant": json.dumps({"messages": [U, A, U]}),
    "empty_final_reply": json.dumps({"messages": [U, {"role": "assistant", "content": " "}]}),
    "orphan_tool_message": json.dumps(
        {"messages": [U, {"role": "tool", "tool_call_id": "c9", "content": SECRET}, A]}
    ),
    "bad_field": json.dumps({"messages": [U, A], "created_at": "yesterday " + SECRET}),
    "too_large": json.dumps({"messages": [U, {"role": "assistant", "content": "x" * 5000}]}),
}


def test_malformed_records_are_quarantined_by_reason_and_counts_reconcile(tmp_path):
    good = [json.dumps({"conversation_id": f"g{i}", "messages": PLAIN}) for i in range(5)]
    lines = [*good[:2], *BAD.values(), *good[2:]]
    src = tmp_path / "mixed.jsonl"
    src.write_bytes(("\n".join(lines) + "\n").encode() + b'{"messages": "\xff\xfe"}\n')
    result = ingest_files([src], date=DATE, log_root=tmp_path / "log", max_record_bytes=4096)
    expected = {reason: 1 for reason in BAD} | {"invalid_encoding": 1}
    assert result.quarantine_reasons == expected
    assert result.records_in == result.written + result.quarantined == len(lines) + 1
    items = read_day(tmp_path / "log", DATE)
    rejected = [i for i in items if isinstance(i, Rejected)]
    assert sorted(r.reason for r in rejected) == sorted(expected)
    for rej in rejected:
        assert rej.source_file == str(src)
        assert "Maria" not in rej.detail and "gmail" not in rej.detail
    assert sorted(r.line_number for r in rejected) == [*range(3, 3 + len(BAD)), len(lines) + 1]
    on_disk = "".join(p.read_text() for p in (tmp_path / "log").rglob("*.jsonl"))
    assert SECRET not in on_disk.replace(json.dumps(PLAIN), "")  # bad records keep no text
    # The day's funnel carries the ingest's quarantine: every input record lands once.
    counts = run_sampling(tmp_path / "log", DATE, n=100, seed=1, salt="s").counts
    assert counts["records_in"] == result.records_in
    assert counts["quarantine_reasons"] == expected
    assert counts["eligible"] == counts["sampled"] == 5


def test_reingesting_a_file_replaces_its_earlier_output(tmp_path):
    stamped = {"messages": PLAIN, "created_at": f"{OTHER}T01:00:00"}
    src = write_jsonl(tmp_path / "a.jsonl", [stamped])
    ingest_files([src], date=DATE, log_root=tmp_path / "log")
    write_jsonl(src, [{"messages": PLAIN}])
    ingest_files([src], date=DATE, log_root=tmp_path / "log")
    assert len(read_day(tmp_path / "log", DATE)) == 1
    assert not list((tmp_path / "log" / OTHER).glob("*.jsonl"))


@pytest.mark.parametrize(
    ("name", "data", "kind"),
    [
        ("garbage.jsonl", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe\n\xfa\xfb", "no_decodable_record"),
        ("broken.parquet", b"PAR1 definitely not parquet", "no_decodable_record"),
        ("words.jsonl", b"hello world\nsecond line\n", "no_decodable_record"),
        ("plain.jsonl.gz", b'{"messages": []}\n', "corrupt_compression"),
        ("log.jsonl.bz2", b"BZh91AY&SY", "unsupported_name"),
    ],
)
def test_an_unreadable_file_is_named_and_counted_and_the_others_are_written(
    tmp_path, name, data, kind
):
    good = write_jsonl(tmp_path / "good.jsonl", [{"messages": PLAIN}])
    bad = tmp_path / name
    bad.write_bytes(data)
    result = ingest_files([good, bad], date=DATE, log_root=tmp_path / "log")
    assert (result.records_in, result.written, result.quarantined) == (1, 1, 0)
    [entry] = result.unreadable
    assert (entry["file"], entry["kind"], entry["lines_read"]) == (str(bad), kind, 0)
    # The day names the file too (a stub, not a record) and its records reconcile.
    counts = run_sampling(tmp_path / "log", DATE, n=10, seed=1, salt="s")
    assert counts.counts["records_in"] == 1 and counts.counts["unreadable_files"] == {kind: 1}
    [row] = counts.quarantine_rows
    assert (row["source_file"], row["reason"]) == (str(bad), "unreadable_file")


def test_missing_file_and_bad_date_are_errors(tmp_path):
    with pytest.raises(UnreadableFile, match="cannot open"):
        ingest_files([tmp_path / "nope.jsonl"], date=DATE, log_root=tmp_path)
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        ingest_files([tmp_path / "nope.jsonl"], date="03/01/2025", log_root=tmp_path)


def test_depsim_ingest_command_json_and_one_line_error(depsim_home, tmp_path, capsys):
    from depsim_assets import cli, config

    src = write_jsonl(tmp_path / "x.jsonl", [{"messages": PLAIN}, "{oops"])
    assert cli.main(["ingest", str(src), "--date", DATE, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["records_in"], out["written"], out["quarantined"]) == (2, 1, 1)
    assert out["quarantine_reasons"] == {"invalid_json": 1} and out["days"] == {DATE: 2}
    assert (config.log_root() / out["outputs"][0]).is_file()
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 nope")
    assert cli.main(["ingest", str(bad), "--date", DATE]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("depsim: error: ") and str(bad) in err and "\n" not in err
