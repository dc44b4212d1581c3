"""A small agentic day with a real model as the candidate AND as the tool simulator.

SmolLM2-135M-Instruct on llama.cpp's ``llama-server`` (``--jinja``: it takes the OpenAI
``tools`` field and parses tool calls out of the model's text) replays six prefixes that
declare tools (two also hold a real call and its result); every tool call it makes is
answered by the same model prompted as the tool (``DEPSIM_TOOLSIM_*``), or replayed from the
prefix. candidate_completions then judge_grades (the built-in judge) run through Dagster, and
a rerun is served from the cache. This llama-server build drops the request's ``tools`` (its
prompt is the same with or without them; ``test_what_the_server_does_with_tools`` prints
it), so SmolLM2 never calls a tool as a candidate: the day runs a second time with a scripted
agent over HTTP as the candidate, whose calls the real model simulates. The test asserts
what must hold whatever the model does, and prints steps per turn and step-limit hits.
"""

from __future__ import annotations

import hashlib
import json
import time

import dagster as dg
import duckdb
import pandas as pd
import pytest

from depsim_assets import config, runs
from depsim_assets.definitions import ASSETS, build_resources
from depsim_assets.partitions import multi_key
from depsim_assets.registry import make_candidate, upsert_candidate
from depsim_assets.warehouse import CONVERSATION_PREFIXES, ensure_tables, replace_partitions
from depsim_tests.real_model import servers
from depsim_tests.replay.agentic_endpoint import AgentState, serve_agent

pytestmark = [pytest.mark.real_model, pytest.mark.e2e]

DAY = "2026-11-06"
TIMEOUT_S = 900


def _tool(name: str, description: str, **properties: str) -> dict:
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object",
                       "properties": {k: {"type": "string", "description": v}
                                      for k, v in properties.items()},
                       "required": list(properties)}}}


WEATHER = _tool("get_weather", "Current weather for a city.", city="City name")
CALC = _tool("calculator", "Evaluate an arithmetic expression.", expression="e.g. 2*(3+4)")
SEARCH = _tool("web_search", "Search the web and return the top results.", query="Query")
EMAIL = _tool("send_email", "Send an email.", to="Address", subject="Subject", body="Body")
SQL = _tool("run_sql", "Run a SQL query on the sales database.", query="SQL text")
SYSTEM = "You are an assistant with tools. Call a tool whenever it helps answer."

ASKS = [
    ([WEATHER], "What is the weather in Lisbon right now? Use the get_weather tool."),
    ([CALC], "Use the calculator: what is 17 * 23 + 4?"),
    ([SEARCH], "Search the web for the opening hours of the Louvre."),
    ([WEATHER, CALC], "Get the weather in Oslo, then tell me the temperature in Fahrenheit."),
    ([EMAIL], "Email bob@example.com that the meeting moved to 3pm."),
    ([SQL], "How many orders did we get yesterday? Query the sales database."),
    ([SEARCH, CALC], "Find the population of Norway and divide it by 5."),
    ([CALC], "Compute 1234 / 7 with the calculator."),
]


def _replayable(tools: list[dict], name: str, arguments: dict, result: str, again: str):
    """A prefix that already holds a real call and its result, then asks for more."""
    return tools, [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Use {name} please."},
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "real_1", "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments)}}]},
        {"role": "tool", "tool_call_id": "real_1", "content": result},
        {"role": "user", "content": again},
    ]


def _prefixes() -> pd.DataFrame:
    # Four asks and two replayable prefixes: each turn of SmolLM2 on two CPU cores costs tens
    # of seconds, and CI runs the whole suite in well under 45 minutes.
    scripts = [(tools, [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}])
               for tools, q in ASKS[:4]]
    scripts.append(_replayable([WEATHER], "get_weather", {"city": "Paris"},
                               '{"city": "Paris", "temp_c": 14, "sky": "rain"}',
                               "Check the weather in Paris again and tell me if I need an "
                               "umbrella."))
    scripts.append(_replayable([CALC], "calculator", {"expression": "2+2"}, "4",
                               "Now use the calculator for 2+2 once more and for 3*3."))
    rows = []
    for i, (tools, messages) in enumerate(scripts):
        text = json.dumps(messages)
        rows.append({"conversation_id": f"agentic-{i:02d}", "traffic_date": DAY,
                     "prefix_json": text, "n_prefix_messages": len(messages),
                     "prefix_hash": hashlib.sha256(text.encode()).hexdigest(),
                     "original_reply": "(not used)", "production_model": "prod",
                     "tools_json": json.dumps(tools)})
    return pd.DataFrame(rows, columns=pd.Index(CONVERSATION_PREFIXES.column_names))


def _materialize(instance, candidate: str, selection: list[str]) -> tuple[dict, float]:
    started = time.monotonic()
    result = dg.materialize(ASSETS, selection=selection, instance=instance,
                            partition_key=str(multi_key(candidate, DAY)),
                            resources=build_resources())
    meta = {}
    for node in selection:
        (mat,) = result.asset_materializations_for_node(node)
        meta[node] = {k: v.value for k, v in mat.metadata.items()}
    return meta, time.monotonic() - started


def _query(sql: str, *params) -> pd.DataFrame:
    with duckdb.connect(str(config.warehouse_path()), read_only=True) as conn:
        return conn.execute(sql, list(params)).df()


REAL = "smollm2-agent"
SCRIPTED = "scripted-agent"


def _scripted_calls(text: str) -> dict[str, str]:
    """The scripted agent's plan for a prompt: 0-3 tool calls, by the prompt's length."""
    return {"calls": str(len(text) % 4)}


def _day(instance, candidate: str, server: servers.Server) -> None:
    """Replay and grade the day with ``candidate``, print what happened, check what must
    hold whatever the model does, and rerun from the cache."""
    meta, elapsed = _materialize(instance, candidate, ["candidate_completions", "judge_grades"])
    rows = _query("SELECT completion_id, conversation_id, status, error, steps, tool_calls, "
                  "tool_trace, reply FROM candidate_completions WHERE candidate = ? "
                  "ORDER BY conversation_id", candidate)
    sims = _query("SELECT endpoint, status, count(*) AS n FROM model_calls "
                  "WHERE kind = 'tool_sim' GROUP BY ALL")
    grades = _query("SELECT c.status AS turn, g.status, count(DISTINCT completion_id) AS n "
                    "FROM judge_grades g JOIN candidate_completions c USING (completion_id) "
                    "WHERE g.candidate = ? GROUP BY ALL", candidate)
    again, _ = _materialize(instance, candidate, ["candidate_completions"])
    replay = meta["candidate_completions"]
    traces = [json.loads(t) for t in rows["tool_trace"]]
    sources = pd.Series([e["result_source"] for trace in traces for e in trace],
                        dtype="object").value_counts(dropna=False).to_dict()
    print(f"\n[real-model agentic {candidate}] turns={len(rows)} seconds={elapsed:.0f} "
          f"statuses={rows['status'].value_counts().to_dict()} "
          f"steps_per_turn={rows['steps'].tolist()} tool_calls={rows['tool_calls'].tolist()} "
          f"step_limit={replay['step_limit']} result_sources={sources} "
          f"calls_made={replay['calls_made']} tool_sim_rows={sims.to_dict('records')} "
          f"grades={grades.to_dict('records')}")
    for cid, trace, status, error, reply in zip(rows["conversation_id"], traces, rows["status"],
                                                rows["error"], rows["reply"], strict=True):
        shown = [(e["step"], e["name"], str(e["arguments"])[:60], e["result_source"],
                  str(e["result"])[:80]) for e in trace]
        print(f"  {cid} {status} {str(error or '')[:90]!r} reply={str(reply)[:100]!r} {shown}")

    # Every prefix is a row with a status of the loop, its counts consistent with its trace.
    assert len(rows) == len(_prefixes())
    assert set(rows["status"]) <= {"ok", "step_limit", "error"}
    assert (rows["status"] != "error").mean() >= 0.8, rows[["status", "error"]]
    for trace, steps, n_calls, status in zip(traces, rows["steps"], rows["tool_calls"],
                                             rows["status"], strict=True):
        run_calls = [e for e in trace if e["result_source"] is not None]
        assert n_calls == len(run_calls) <= 3
        # A step that called tools is in the trace; the final reply, or a failed step, is not.
        traced = len({e["step"] for e in trace})
        assert steps >= 1
        assert steps - traced in ((1,) if status == "ok" else (0,) if status == "step_limit"
                                  else (0, 1))
        if status == "step_limit":
            assert any(e["result"] is None for e in trace)
    # The model layer saw every step and every simulation, at the real server.
    assert replay["calls_made"] == int(rows["steps"].sum())
    simulated = sources.get("simulated", 0) + sources.get("simulator_error", 0)
    assert int(sims.loc[sims["status"] == "ok", "n"].sum()) >= sources.get("simulated", 0)
    assert set(sims["endpoint"]) <= {server.base_url}
    assert replay["tool_results_simulated"] + replay["tool_simulator_errors"] == simulated
    # The judge graded every ok and step_limit turn (the built-in judge scores them all).
    finished = int(rows["status"].isin(["ok", "step_limit"]).sum())
    graded = grades[grades["turn"].isin(["ok", "step_limit"]) & (grades["status"] == "scored")]
    assert int(graded["n"].sum()) == finished
    # A rerun is served from the cache: no step and no simulation is asked again.
    assert again["candidate_completions"]["calls_made"] == 0


def test_a_small_agentic_day_with_the_real_model_as_candidate_and_tool(
        tmp_path, native_server, monkeypatch):
    monkeypatch.setenv("DEPSIM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DEPSIM_WAREHOUSE", raising=False)
    # The same model, prompted as the tool (toolsim.simulator_messages).
    for key, value in {"BASE_URL": native_server.base_url, "MODEL": servers.MODEL,
                       "TIMEOUT_S": str(TIMEOUT_S), "MAX_CONCURRENCY": "2",
                       "MAX_RETRIES": "1", "MAX_OUTPUT_TOKENS": "64"}.items():
        monkeypatch.setenv(f"DEPSIM_TOOLSIM_{key}", value)
    # Turns the model gets wrong are rows, not a stopped day: let the judge see them all.
    monkeypatch.setenv("DEPSIM_MAX_ERROR_SHARE", "1.0")
    upsert_candidate(make_candidate(
        name=REAL, base_url=native_server.base_url, model=servers.MODEL,
        context_window=servers.CONTEXT_WINDOW, max_tokens=128, timeout_s=TIMEOUT_S,
        max_retries=1, max_concurrency=2, params={"temperature": 0},
        max_tool_calls=3, max_turn_tokens=400))
    # This llama-server drops the request's tools (see the probe below), so SmolLM2 never
    # calls one: a scripted agent over HTTP makes the calls the real model then simulates.
    state = AgentState(default=_scripted_calls)
    agent, agent_url = serve_agent(state)
    upsert_candidate(make_candidate(name=SCRIPTED, base_url=agent_url, model="scripted",
                                    max_retries=0, max_tool_calls=2))
    with duckdb.connect(str(config.warehouse_path())) as conn:
        ensure_tables(conn)
        replace_partitions(conn, [(CONVERSATION_PREFIXES, _prefixes(), {"traffic_date": DAY})])
    try:
        with dg.DagsterInstance.ephemeral() as instance:
            runs.ensure_candidate_partitions(instance, [REAL, SCRIPTED])
            _day(instance, REAL, native_server)
            _day(instance, SCRIPTED, native_server)
    finally:
        agent.shutdown()


def test_what_the_server_does_with_tools(native_server):
    """llama-server's own answer to one agentic request, raw, with tool_choice auto and
    required: shows whether the server offers the tools to the model at all (printed), and
    that it answers such a request with a well-formed message either way."""
    import httpx

    messages = [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": ASKS[0][1]}]
    with httpx.Client(timeout=TIMEOUT_S) as client:
        props = client.get(f"{native_server.root}/props").json()
        template = str(props.get("chat_template", ""))
        print(f"\n[llama-server] build={props.get('build_info')} template_mentions_tools="
              f"{'tools' in template} template_head={template[:120]!r}")
        for choice in ("auto", "required"):
            body = {"model": servers.MODEL, "messages": messages, "tools": [WEATHER],
                    "tool_choice": choice, "temperature": 0, "max_tokens": 96}
            response = client.post(f"{native_server.base_url}/chat/completions", json=body)
            print(f"[llama-server tool_choice={choice}] HTTP {response.status_code} "
                  f"{response.text[:600]}")
            assert response.status_code in (200, 400, 500)
            if response.status_code == 200:
                message = response.json()["choices"][0]["message"]
                assert message.get("content") or message.get("tool_calls")
