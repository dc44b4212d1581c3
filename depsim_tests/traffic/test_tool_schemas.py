"""Declared tools (OpenAI ``tools``, legacy ``functions``) through the traffic stage: read,
checked, de-identified, identical on both sampling engines, and the day's ``tool_examples``."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from depsim_assets.traffic.ingest import ingest_files, normalise
from depsim_assets.traffic.logs import BAD_FIELD, LogRecord, Rejected, iter_log, parse_line
from depsim_assets.traffic.pipeline import run_sampling
from depsim_assets.traffic.tool_examples import examples_of_day
from depsim_assets.warehouse import SAMPLED_CONVERSATIONS

DAY = "2026-04-02"
SALT = "t" * 48
EMAIL = "dana.whitfield@hollowbrook-legal.com"

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": f"Weather for a city. Escalations go to {EMAIL}.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "units": {"type": "string", "enum": ["C", "F"]},
            },
            "required": ["city"],
        },
    },
}
LEGACY = {"name": "lookup_order", "description": "Find an order",
          "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}}}


def _agentic(cid: str, *, city: str = "Oslo", tools=None, functions=None) -> dict:
    call = {"id": f"{cid}-1", "type": "function",
            "function": {"name": "get_weather", "arguments": json.dumps({"city": city})}}
    unanswered = {"id": f"{cid}-2", "type": "function",
                  "function": {"name": "lookup_order", "arguments": '{"order_id": "A1"}'}}
    rec: dict = {
        "conversation_id": cid,
        "messages": [
            {"role": "user", "content": f"Weather in {city}? Mail me at {EMAIL}"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": f"{cid}-1",
             "content": json.dumps({"city": city, "temp_c": 4, "sky": "rain"})},
            {"role": "assistant", "content": None, "tool_calls": [unanswered]},
            {"role": "assistant", "content": f"It is 4C and rainy in {city}."},
        ],
    }
    if tools is not None:
        rec["tools"] = tools
    if functions is not None:
        rec["functions"] = functions
    return rec


def _plain(cid: str) -> dict:
    return {"conversation_id": cid, "messages": [
        {"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]}


def _parse(rec) -> LogRecord | Rejected:
    return parse_line(json.dumps(rec).encode(), f"{DAY}/a.jsonl", 1, 1 << 20)


def test_tools_and_legacy_functions_are_read_in_openai_form():
    rec = _parse(_agentic("c1", tools=[WEATHER], functions=[LEGACY]))
    assert isinstance(rec, LogRecord)
    assert rec.tools == [WEATHER, {"type": "function", "function": LEGACY}]
    assert _parse(_plain("c2")).tools is None  # type: ignore[union-attr]
    # one schema per name: the first declaration is kept
    rec = _parse(_agentic("c3", tools=[WEATHER, WEATHER]))
    assert isinstance(rec, LogRecord) and rec.tools == [WEATHER]


@pytest.mark.parametrize(
    ("tools", "detail"),
    [
        ({"type": "function"}, "'tools' is an object, not an array"),
        (["get_weather"], "tools entry 0 is a string, not an object"),
        ([{"type": "function", "function": {"description": "x"}}], "no function name"),
        ([{"type": "function", "function": {"name": "f", "parameters": "x"}}],
         "parameters are a string"),
    ],
)
def test_malformed_tools_are_quarantined_by_name_without_text(tools, detail):
    rej = _parse(_agentic("bad", tools=tools))
    assert isinstance(rej, Rejected) and rej.reason == BAD_FIELD
    assert detail in rej.detail and EMAIL not in rej.detail


def _write_day(root: Path) -> Path:
    folder = root / DAY
    folder.mkdir(parents=True)
    lines = [_plain(f"p{i}") for i in range(40)]
    lines += [_agentic(f"a{i}", city=c, tools=[WEATHER], functions=[LEGACY])
              for i, c in enumerate(["Oslo", "Lima", "Paris", "Quito", "Oslo", "Rome"])]
    lines += [_agentic("a-undeclared", city="Kyiv")]
    lines.append(_agentic("a-bad", tools={"x": 1}))
    (folder / "a.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return root


def test_both_engines_give_the_same_rows_with_tools_deidentified(tmp_path):
    root = _write_day(tmp_path)
    kw = {"n": 100, "seed": 3, "salt": SALT}
    py = run_sampling(root, DAY, engine="python", **kw)
    db = run_sampling(root, DAY, engine="duckdb", **kw)
    for name in ("sampled_rows", "prefix_rows", "quarantine_rows", "funnel_rows", "counts"):
        assert getattr(db, name) == getattr(py, name), name
    # every line that declares tools went to Python; the plain ones stayed in SQL
    assert db.engine["python_lines"] == 8
    assert py.counts["quarantine_reasons"] == {BAD_FIELD: 1}
    rows = {r["conversation_id"]: r for r in db.sampled_rows}
    assert rows["p0"]["tools_json"] is None and rows["a-undeclared"]["tools_json"] is None
    tools = json.loads(rows["a0"]["tools_json"])
    fn = tools[0]["function"]
    # names, keys and structure kept; the e-mail in the description replaced, consistently
    # with the same address in the messages
    assert [t["function"]["name"] for t in tools] == ["get_weather", "lookup_order"]
    assert fn["parameters"]["required"] == ["city"]
    assert fn["parameters"]["properties"]["units"] == {"type": "string", "enum": ["C", "F"]}
    assert EMAIL not in rows["a0"]["tools_json"] and EMAIL not in rows["a0"]["messages_json"]
    surrogate = fn["description"].removeprefix("Weather for a city. Escalations go to ")
    assert surrogate.rstrip(".") in rows["a0"]["messages_json"]
    prefixes = {r["conversation_id"]: r for r in db.prefix_rows}
    assert prefixes["a0"]["tools_json"] == rows["a0"]["tools_json"]
    assert db.status_row["passed"] and db.counts["residual_quarantined"] == 0


def test_tool_examples_are_the_answered_calls_with_their_schema(tmp_path):
    root = _write_day(tmp_path)
    result = run_sampling(root, DAY, n=100, seed=3, salt=SALT, engine="python")
    frame, unanswered = examples_of_day(SAMPLED_CONVERSATIONS.frame(result.sampled_rows), DAY)
    # 7 agentic conversations, each one answered weather call and one unanswered lookup
    assert len(frame) == 7 and unanswered == 7
    assert set(frame["tool_name"]) == {"get_weather"}
    assert frame["call_index"].tolist() == [0] * 7
    oslo = frame[frame["conversation_id"] == "a0"].iloc[0]
    assert json.loads(oslo["arguments"]) == {"city": "Oslo"}
    assert json.loads(oslo["result"]) == {"city": "Oslo", "temp_c": 4, "sky": "rain"}
    # the function's schema, as replay shows it to the tool simulator
    schema = json.loads(oslo["schema_json"])
    assert schema["name"] == "get_weather" and schema["parameters"]["required"] == ["city"]
    undeclared = frame[frame["conversation_id"] == "a-undeclared"].iloc[0]
    assert undeclared["schema_json"] is None


def test_ingest_keeps_tools_and_converts_anthropic_tool_definitions():
    openai_rec = normalise(_agentic("c1", tools=[WEATHER]))
    assert openai_rec["tools"] == [WEATHER]
    anthropic = {
        "id": "m1",
        "tools": [{"name": "get_weather", "description": "Weather",
                   "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "messages": [{"role": "user", "content": "hi"},
                     {"role": "assistant", "content": [{"type": "text", "text": "hello"}]}],
    }
    out = normalise(anthropic, "anthropic")
    assert out["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


def test_ingest_reads_tools_stored_as_json_text_in_parquet(tmp_path):
    src = tmp_path / "calls.parquet"
    rec = _agentic("pq1", tools=[WEATHER])
    pq.write_table(pa.table({
        "conversation_id": ["pq1", "pq2"],
        "messages": [json.dumps(rec["messages"])] * 2,
        "tools": [json.dumps([WEATHER]), "{not json"],
    }), src)
    result = ingest_files([src], date=DAY, log_root=tmp_path / "log")
    assert (result.written, result.quarantined) == (1, 1)
    items = list(iter_log(tmp_path / "log", DAY))
    [record] = [i for i in items if isinstance(i, LogRecord)]
    assert record.tools == [WEATHER]
    [rej] = [i for i in items if isinstance(i, Rejected)]
    assert rej.reason == BAD_FIELD and "'tools' is text that is not JSON" in rej.detail
