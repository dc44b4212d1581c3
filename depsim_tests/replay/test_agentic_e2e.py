"""The agentic loop through Dagster: candidate_completions on a day of agentic prefixes, the
scripted agent as candidate and the built-in simulator's sim-tool-simulator as the tool
simulator (the resource's default), each through the response cache of a real warehouse."""

from __future__ import annotations

import hashlib
import json

import dagster as dg
import duckdb
import pandas as pd
import pytest

from depsim_assets import config, runs
from depsim_assets.registry import Candidate, Registry, save_registry
from depsim_assets.warehouse import CONVERSATION_PREFIXES, ensure_tables, replace_partitions
from depsim_tests.replay.agentic_endpoint import AgentState, serve_agent

pytestmark = pytest.mark.e2e

DAY = "2026-11-01"
SEARCH = {"type": "function", "function": {
    "name": "search", "description": "Search the web.",
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}


def _prefix_rows() -> pd.DataFrame:
    scripts = {
        "plain": ([{"role": "user", "content": "what is a monad?"}], None),
        "two_calls": ([{"role": "user", "content": "calls=2 tool=search"}], [SEARCH]),
        "forever": ([{"role": "user", "content": "calls=forever tool=search"}], [SEARCH]),
        # The call the agent makes was answered in the prefix: its real result is replayed.
        "replayed": ([
            {"role": "user", "content": 'calls=1 tool=search args={"q":"tides"}'},
            {"role": "assistant", "content": None, "tool_calls": [{
                "id": "r1", "type": "function",
                "function": {"name": "search", "arguments": '{"q": "tides"}'}}]},
            {"role": "tool", "tool_call_id": "r1", "content": "High tide 06:12, low 12:30."},
            {"role": "user", "content": "thanks, and tomorrow?"},
        ], None),
    }
    rows = []
    for cid, (messages, tools) in scripts.items():
        text = json.dumps(messages)
        rows.append({"conversation_id": cid, "traffic_date": DAY, "prefix_json": text,
                     "n_prefix_messages": len(messages),
                     "prefix_hash": hashlib.sha256(text.encode()).hexdigest(),
                     "original_reply": "ok", "production_model": "prod",
                     "tools_json": json.dumps(tools) if tools else None})
    return pd.DataFrame(rows, columns=pd.Index(CONVERSATION_PREFIXES.column_names))


def _replay(instance) -> dict:
    key = str(runs.multi_key("agent", DAY))
    runs.execute([runs.PlannedRun("agent", ("candidate_completions",), key)], instance)
    event = instance.get_latest_materialization_event(dg.AssetKey("candidate_completions"))
    return event.asset_materialization.metadata


def test_an_agentic_day_through_dagster(depsim_home, instance):
    state = AgentState()
    server, url = serve_agent(state)
    try:
        save_registry(Registry(baseline="agent", candidates=[Candidate(
            name="agent", base_url=url, model="scripted", max_retries=0, max_tool_calls=3)]))
        with duckdb.connect(str(config.warehouse_path())) as conn:
            ensure_tables(conn)
            replace_partitions(conn, [(CONVERSATION_PREFIXES, _prefix_rows(),
                                       {"traffic_date": DAY})])
        runs.ensure_candidate_partitions(instance, ["agent"])
        meta = _replay(instance)
        with duckdb.connect(str(config.warehouse_path()), read_only=True) as conn:
            rows = conn.execute(
                "SELECT conversation_id, status, steps, tool_calls, tool_trace, reply "
                "FROM candidate_completions WHERE candidate = 'agent'").df()
            kinds = dict(conn.execute(
                "SELECT kind, count(*) FROM model_calls GROUP BY kind").fetchall())
        by_id = rows.set_index("conversation_id")
        assert by_id.loc["plain", "status"] == "ok" and by_id.loc["plain", "steps"] == 1
        assert (by_id.loc["two_calls", ["status", "steps", "tool_calls"]].tolist()
                == ["ok", 3, 2])
        trace = json.loads(by_id.loc["two_calls", "tool_trace"])
        assert [e["result_source"] for e in trace] == ["simulated", "simulated"]
        assert all(e["result"] and e["result"] in by_id.loc["two_calls", "reply"] for e in trace)
        assert (by_id.loc["forever", ["status", "steps", "tool_calls"]].tolist()
                == ["step_limit", 4, 3])
        replayed = json.loads(by_id.loc["replayed", "tool_trace"])
        assert [(e["result_source"], e["result"]) for e in replayed] == [
            ("replayed", "High tide 06:12, low 12:30.")]
        # 1 + 3 + 4 + 2 candidate steps; 2 + 3 results simulated, 1 replayed.
        assert kinds == {"replay": 10, "tool_sim": 5}
        assert meta["calls_made"].value == 10 and meta["step_limit"].value == 1
        assert meta["steps"].value == 10 and meta["tool_calls"].value == 6
        assert meta["tool_results_simulated"].value == 5
        assert meta["tool_results_replayed"].value == 1
        assert meta["agentic_turns"].value == 3
        examples = meta["example_trajectories"].value.records
        assert examples[0].data["conversation_id"] == "forever"
        # A rerun is all cache: no candidate step, no simulation.
        sent = len(state.requests)
        again = _replay(instance)
        assert again["calls_made"].value == 0 and again["cache_hits"].value == 10
        assert len(state.requests) == sent
        with duckdb.connect(str(config.warehouse_path()), read_only=True) as conn:
            rerun = conn.execute(
                "SELECT conversation_id, status, steps, tool_calls, tool_trace, reply "
                "FROM candidate_completions WHERE candidate = 'agent'").df()
            assert conn.execute("SELECT count(*) FROM model_calls").fetchone()[0] == 15
        assert rerun.sort_values("conversation_id").reset_index(drop=True).equals(
            rows.sort_values("conversation_id").reset_index(drop=True))
    finally:
        server.shutdown()
