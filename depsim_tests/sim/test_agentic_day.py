"""The agentic synthetic day: records the log reader takes, tools declared, real-looking
call/result pairs (some errors) in the prefixes, a task last, personal data recorded."""

import json

from depsim_assets.measurement import DEMO_MARKER
from depsim_assets.sim.tool_sim import is_error_result
from depsim_assets.traffic.logs import parse_record
from depsim_demo.synth import AGENTIC_TOOLS, agentic_lines, write_agentic_day

DAY = "2026-05-01"


def test_the_day_is_deterministic_and_written_atomically(tmp_path):
    path = write_agentic_day(tmp_path, DAY, n=120, seed=4)
    assert path == tmp_path / DAY / "part-00000.jsonl"
    text = path.read_text(encoding="utf-8")
    assert text == "".join(line.text + "\n" for line in agentic_lines(DAY, 120, seed=4))
    assert write_agentic_day(tmp_path, DAY, n=120, seed=4).read_text(encoding="utf-8") == text
    assert DAY in json.loads((tmp_path / DEMO_MARKER).read_text())["days"]
    assert text != "".join(line.text + "\n" for line in agentic_lines(DAY, 120, seed=5))
    assert not list((tmp_path / DAY).glob(".*.tmp"))


def test_records_declare_tools_and_hold_real_calls_before_the_task():
    lines = list(agentic_lines(DAY, 400, seed=4))
    exchanges = errors = 0
    names = set()
    for i, line in enumerate(lines):
        record = json.loads(line.text)
        parsed = parse_record(record, "part-00000.jsonl", i + 1)
        assert parsed.tools == record["tools"]  # the reader keeps the schemas
        declared = {t["function"]["name"] for t in record["tools"]}
        assert declared <= set(AGENTIC_TOOLS)
        assert declared & {"run_sql", "file_manager"}  # a destructive call is possible
        messages = record["messages"]
        assert messages[-1]["role"] == "assistant" and isinstance(messages[-1]["content"], str)
        assert messages[-2]["role"] == "user"  # the task is the last user turn
        calls = {}
        for message in messages:
            for call in message.get("tool_calls") or []:
                assert call["function"]["name"] in declared
                json.loads(call["function"]["arguments"])
                calls[call["id"]] = call["function"]["name"]
            if message["role"] == "tool":
                assert message["tool_call_id"] in calls
                exchanges += 1
                errors += is_error_result(message["content"])
        names.update(calls.values())
    assert names == set(AGENTIC_TOOLS)
    assert 0.07 < errors / exchanges < 0.18  # AGENTIC_ERROR_SHARE = 0.12
    assert len({line.conversation_id for line in lines}) == len(lines)


def test_planted_personal_data_is_in_the_record_and_recorded():
    lines = list(agentic_lines(DAY, 300, seed=4))
    planted = [(line, p) for line in lines for p in line.planted]
    assert len(planted) > 60
    kinds = {p.kind for _, p in planted}
    assert {"EMAIL", "PERSON_NAME", "PHONE"} <= {k.upper() for k in kinds}
    for line, p in planted:
        assert p.value in json.dumps(json.loads(line.text), ensure_ascii=False)
    # Tool arguments and results carry some of it, as real agent logs do.
    in_tools = sum(
        any(p.value in json.dumps(m.get("tool_calls")) or (m["role"] == "tool"
            and p.value in m["content"]) for m in json.loads(line.text)["messages"])
        for line, p in planted)
    assert in_tools > 10


def test_tasks_ask_for_deletion_now_and_then():
    from depsim_assets.sim.agentic import asks_for_deletion

    tasks = [json.loads(line.text)["messages"][-2]["content"]
             for line in agentic_lines(DAY, 600, seed=4)]
    tasks = [t if isinstance(t, str) else t[0]["text"] for t in tasks]
    approved = sum(asks_for_deletion([t]) for t in tasks)
    assert 0.02 < approved / len(tasks) < 0.12
