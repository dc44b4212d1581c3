"""Tool-simulator calls (replay/tools.py) over real HTTP: example retrieval, prompts, cache,
failures as results."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from depsim_assets import toolsim
from depsim_assets.endpoints import EndpointError
from depsim_assets.models import Budget
from depsim_assets.replay.tools import (
    FAILED_TEXT,
    ToolCall,
    nearest_examples,
    simulate_tools,
)
from depsim_assets.resources import RealismDiscriminator, ToolSimulator, Warehouse
from depsim_assets.warehouse import TOOL_EXAMPLES, ensure_tables, replace_partitions


class _Tool(BaseHTTPRequestHandler):
    """A tool-simulator endpoint: parses the prompt (as a real simulator would) and answers
    with what it was shown, so a test sees the prompt's content in the result."""

    requests: list = []
    fail_names: set = set()

    def do_POST(self):  # noqa: N802 - the http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append(body)
        req = toolsim.parse_simulator_request(body["messages"])
        if req.name in self.fail_names:
            self.send_response(400)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
            return
        text = json.dumps({"tool": req.name, "args": req.arguments,
                           "examples": [e.result for e in req.examples],
                           "schema": req.schema, "turns": len(req.trajectory)})
        out = json.dumps({
            "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    handler = type("Tool", (_Tool,), {"requests": [], "fail_names": set()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield handler, f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def _examples(rows):
    cols = TOOL_EXAMPLES.column_names
    return pd.DataFrame([dict(zip(cols, r, strict=True)) for r in rows], columns=pd.Index(cols))


@pytest.fixture
def warehouse(tmp_path):
    wh = Warehouse(database=str(tmp_path / "wh.duckdb"))
    day1 = _examples([
        ("2026-03-01", "c1", 0, "weather", '{"city": "Oslo"}', "Oslo: 3C rain", None),
        ("2026-03-01", "c2", 0, "weather", '{"city": "Lima"}', "Lima: 24C sun", None),
        ("2026-03-01", "c3", 0, "search", '{"q": "oslo museums"}', "3 hits", None),
    ])
    day2 = _examples([
        ("2026-03-02", "c4", 0, "weather", '{"city": "Oslo", "units": "F"}', "Oslo: 38F", None),
        ("2026-03-02", "c5", 0, "weather", '{"city": "Paris"}', "Paris: 12C cloud", None),
    ])
    day3 = _examples([
        ("2026-03-03", "c6", 0, "weather", '{"city": "Oslo"}', "FUTURE Oslo", None),
    ])
    with wh.get_connection() as conn:
        ensure_tables(conn)
        replace_partitions(conn, [(TOOL_EXAMPLES, day1, {"traffic_date": "2026-03-01"}),
                                  (TOOL_EXAMPLES, day2, {"traffic_date": "2026-03-02"}),
                                  (TOOL_EXAMPLES, day3, {"traffic_date": "2026-03-03"})])
    return wh


def _call(conversation="cX", day="2026-03-02", name="weather", args='{"city": "Oslo"}'):
    trajectory = [{"role": "user", "content": "weather in Oslo?"},
                  {"role": "assistant", "content": None, "tool_calls": [
                      {"id": "t1", "type": "function",
                       "function": {"name": name, "arguments": args}}]}]
    schema = {"name": name, "parameters": {"type": "object"}}
    return ToolCall(conversation, day, name, args, schema, trajectory)


def _run(warehouse, simulator, calls, budget=None):
    lines: list[str] = []
    results = asyncio.run(simulate_tools(warehouse, simulator, calls, budget=budget,
                                         log=lines.append))
    return results, lines


def test_examples_are_the_most_similar_calls_of_the_same_tool_up_to_the_day(
        warehouse, endpoint):
    handler, url = endpoint
    sim = ToolSimulator(base_url=url, model="toolsim-test", examples_k=2)
    results, _ = _run(warehouse, sim, [_call()])
    shown = json.loads(results[0].text)
    # The two Oslo calls first; never the search tool; never the later day's result.
    assert shown["examples"] == ["Oslo: 3C rain", "Oslo: 38F"]
    assert shown["schema"] == {"name": "weather", "parameters": {"type": "object"}}
    assert shown["turns"] == 2
    assert results[0].source == toolsim.RESULT_SIMULATED and results[0].error is None
    assert (results[0].prompt_tokens, results[0].completion_tokens) == (11, 7)
    # temperature 0 by default, and the model as configured
    assert handler.requests[0]["temperature"] == 0 and handler.requests[0]["model"] == (
        "toolsim-test")


def test_examples_never_come_from_the_calls_own_conversation(warehouse, endpoint):
    _, url = endpoint
    sim = ToolSimulator(base_url=url, model="toolsim-test", examples_k=2)
    results, _ = _run(warehouse, sim, [_call(conversation="c1")])
    assert "Oslo: 3C rain" not in json.loads(results[0].text)["examples"]
    # A day with no earlier calls of the tool from other conversations: no examples at all.
    results, _ = _run(warehouse, sim, [_call(conversation="c3", day="2026-03-01",
                                             args='{"q": "oslo"}', name="search")])
    assert json.loads(results[0].text)["examples"] == []


def test_results_are_cached_and_a_rerun_makes_no_call(warehouse, endpoint):
    handler, url = endpoint
    sim = ToolSimulator(base_url=url, model="toolsim-test")
    calls = [_call(), _call(args='{"city": "Paris"}'), _call(name="search", args='{"q": "x"}')]
    first, lines = _run(warehouse, sim, calls)
    assert len(handler.requests) == 3 and "0 results cached, 3 to simulate" in lines[0]
    again, lines = _run(warehouse, sim, calls)
    assert len(handler.requests) == 3 and "3 results cached, 0 to simulate" in lines[0]
    assert [r.text for r in again] == [r.text for r in first]
    with warehouse.get_connection() as conn:
        kinds = conn.execute("SELECT kind, count(*) FROM model_calls GROUP BY kind").fetchall()
    assert kinds == [("tool_sim", 3)]


def test_a_failed_call_is_a_simulator_error_result_and_is_asked_again(warehouse, endpoint):
    handler, url = endpoint
    handler.fail_names.add("search")
    sim = ToolSimulator(base_url=url, model="toolsim-test", max_retries=0)
    calls = [_call(), _call(name="search", args='{"q": "x"}')]
    results, _ = _run(warehouse, sim, calls)
    assert results[0].source == toolsim.RESULT_SIMULATED
    assert results[1].source == toolsim.RESULT_SIMULATOR_ERROR
    assert results[1].text == FAILED_TEXT and "400" in (results[1].error or "")
    handler.fail_names.clear()
    results, _ = _run(warehouse, sim, calls)
    assert [r.source for r in results] == [toolsim.RESULT_SIMULATED] * 2
    assert len(handler.requests) == 3  # the ok one from the cache, the failed one again


def test_an_unreachable_or_keyless_simulator_gives_error_results_not_exceptions(
        warehouse, monkeypatch):
    monkeypatch.delenv("DEPSIM_TEST_TOOLSIM_KEY", raising=False)
    sim = ToolSimulator(base_url="http://127.0.0.1:9/v1", model="m",
                        api_key_env="DEPSIM_TEST_TOOLSIM_KEY")
    results, lines = _run(warehouse, sim, [_call()])
    assert results[0].source == toolsim.RESULT_SIMULATOR_ERROR
    assert "DEPSIM_TEST_TOOLSIM_KEY" in (results[0].error or "")
    sim = ToolSimulator(base_url="http://127.0.0.1:9/v1", model="m", max_retries=0,
                        timeout_s=2)
    results, _ = _run(warehouse, sim, [_call()])
    assert results[0].source == toolsim.RESULT_SIMULATOR_ERROR and results[0].error


def test_a_spent_budget_simulates_nothing(warehouse, endpoint):
    handler, url = endpoint
    sim = ToolSimulator(base_url=url, model="toolsim-test")
    results, _ = _run(warehouse, sim, [_call()], budget=Budget(max_usd=1.0, spent_usd=1.0))
    assert results[0].source == toolsim.RESULT_SIMULATOR_ERROR
    assert results[0].error and results[0].error.startswith("NotAttempted")
    assert handler.requests == []


def test_nearest_examples_breaks_ties_by_newest_day_and_handles_argumentless_tools():
    pool = pd.DataFrame({
        "traffic_date": ["2026-03-02", "2026-03-01", "2026-03-01"],
        "conversation_id": ["b", "a", "c"], "call_index": [0, 0, 0],
        "tool_name": ["now"] * 3, "arguments": ["{}", "{}", "{}"],
        "result": ["t2", "t1", "t3"],
    })
    found = nearest_examples(pool, name="now", traffic_date="2026-03-02", k=2,
                             queries=[("z", "{}"), ("b", "{}")])
    assert [e.result for e in found[0]] == ["t2", "t1"]
    assert [e.result for e in found[1]] == ["t1", "t3"]  # never its own conversation's


def test_the_roles_are_configured_from_their_variables_and_never_echo_a_key(monkeypatch):
    monkeypatch.setenv("DEPSIM_TOOLSIM_MODEL", "my-simulator")
    monkeypatch.setenv("DEPSIM_TOOLSIM_EXAMPLES_K", "5")
    monkeypatch.setenv("DEPSIM_DISCRIMINATOR_BASE_URL", "https://user:pw123456@gw.example/v1?k=1")
    sim = ToolSimulator(timeout_s=9)  # one field given, the rest from the environment
    assert (sim.model, sim.examples_k, sim.timeout_s, sim.base_url) == (
        "my-simulator", 5, 9, "sim")
    disc = RealismDiscriminator()
    assert disc.model == toolsim.SIM_DISCRIMINATOR
    assert disc.label() == "https://gw.example/v1 sim-discriminator"  # no credentials
    key = "sk-proj-" + "a1B2" * 10
    with pytest.raises(EndpointError) as err:
        ToolSimulator(api_key_env=key)
    assert key not in str(err.value) and "NAME of the environment variable" in str(err.value)
    monkeypatch.setenv("DEPSIM_TOOLSIM_EXAMPLES_K", "many")
    with pytest.raises(EndpointError, match="DEPSIM_TOOLSIM_EXAMPLES_K='many' is not a whole"):
        ToolSimulator()
