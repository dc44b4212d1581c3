"""The agentic loop of replay (issue #14) against a scripted agent over real HTTP, with the
response cache in a real DuckDB file: rounds of steps until the final reply, the step limits,
results replayed from the prefix, failures, today's requests for non-agentic prefixes, and
resume after an interrupted run."""

from __future__ import annotations

import asyncio
import hashlib
import json

import duckdb
import pandas as pd
import pytest
from dagster_duckdb import DuckDBResource

from depsim_assets import toolsim
from depsim_assets.endpoints import display_endpoint
from depsim_assets.judging.assets import _ungradable
from depsim_assets.models import CallEngine, Limits, request_key
from depsim_assets.registry import Candidate, RegistryError, generation_fingerprint, make_candidate
from depsim_assets.replay.agentic import (
    SIMULATOR_FAILED_RESULT,
    LoopStats,
    canonical_arguments,
    replay_with_cache,
    step_key,
    tool_context,
)
from depsim_assets.replay.assets import _rows, trajectory_examples
from depsim_assets.replay.checks import error_share_result
from depsim_assets.replay.engine import ReplayRequest, sample_seed
from depsim_assets.replay.tools import ToolCall, ToolResult
from depsim_tests.replay.agentic_endpoint import AgentState, serve_agent

DAY = "2026-11-01"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                    "unit": {"type": "string"}}}}}
LOOKUP = {"type": "function", "function": {
    "name": "lookup", "parameters": {"type": "object", "properties": {"step": {}}}}}
TOOLS_JSON = json.dumps([WEATHER, LOOKUP])


class FakeSim:
    """A tool simulator written for the tests: deterministic results, every call recorded;
    ``fail`` names tools it fails, ``raise_on`` the invocation (1-based) that raises."""

    def __init__(self, fail: tuple[str, ...] = (), raise_on: int | None = None,
                 error: BaseException | None = None):
        self.calls: list[ToolCall] = []
        self.invocations = 0
        self.fail, self.raise_on, self.error = fail, raise_on, error

    async def __call__(self, calls: list[ToolCall]) -> list[ToolResult]:
        self.invocations += 1
        if self.raise_on is not None and self.invocations == self.raise_on:
            raise self.error or RuntimeError("simulator crashed")
        self.calls.extend(calls)
        return [
            ToolResult(text="", source=toolsim.RESULT_SIMULATOR_ERROR, error="Timeout: slow",
                       prompt_tokens=0, completion_tokens=0)
            if c.name in self.fail else
            ToolResult(text=json.dumps({"sim": c.name, "args": json.loads(c.arguments)}),
                       source=toolsim.RESULT_SIMULATED, error=None, prompt_tokens=3,
                       completion_tokens=4)
            for c in calls
        ]


@pytest.fixture
def agent():
    state = AgentState()
    server, url = serve_agent(state)
    yield state, url
    server.shutdown()


@pytest.fixture
def warehouse(tmp_path):
    return DuckDBResource(database=str(tmp_path / "warehouse.duckdb"))


def entry(url: str, **fields) -> Candidate:
    return Candidate(name="agent", base_url=url, model="scripted", max_retries=0,
                     max_concurrency=4, **fields)


def run(warehouse, cand, prefixes, sim, *, tools_json=TOOLS_JSON, stats=None):
    """Replay each prefix (a list of messages) once; the outcomes in order."""
    requests = [ReplayRequest(f"c{i}", 0, p) for i, p in enumerate(prefixes)]
    contexts = [tool_context(p, tools_json) for p in prefixes]
    engine = CallEngine(Limits(max_concurrency=4, max_retries=0))
    return asyncio.run(replay_with_cache(
        warehouse, cand, requests, contexts, engine=engine, simulate=sim, traffic_date=DAY,
        partition_key=f"agent|{DAY}", stats=stats))


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_turn_ends_ok_after_three_tool_rounds(agent, warehouse):
    state, url = agent
    sim = FakeSim()
    stats = LoopStats()
    (out,) = run(warehouse, entry(url), [user("calls=3 tool=lookup")], sim, stats=stats)
    assert out.status == "ok" and out.error is None
    assert (out.steps, out.tool_calls) == (4, 3)
    assert [e["step"] for e in out.tool_trace] == [0, 1, 2]
    assert {e["result_source"] for e in out.tool_trace} == {toolsim.RESULT_SIMULATED}
    assert set(out.tool_trace[0]) == {"step", "id", "name", "arguments", "result",
                                      "result_source", "content"}
    assert out.tool_trace[0]["content"] == "calling lookup"
    # The final reply saw the three simulated results, in order.
    results = [e["result"] for e in out.tool_trace]
    assert out.reply == "done: " + " | ".join(results)
    assert (out.prompt_tokens, out.completion_tokens) == (4 * 7, 4 * 5)
    # Four requests, each with the declared tools; the last holds three call/result pairs.
    assert len(state.requests) == 4
    assert all(r["tools"] == [WEATHER, LOOKUP] for r in state.requests)
    last = state.requests[-1]["messages"]
    assert [m["role"] for m in last] == ["user"] + ["assistant", "tool"] * 3
    assert [m["tool_call_id"] for m in last if m["role"] == "tool"] == [
        "cand_0_0", "cand_1_0", "cand_2_0"]
    # The simulator saw each call with its schema and the trajectory up to the call.
    assert [c.arguments for c in sim.calls] == [e["arguments"] for e in out.tool_trace]
    assert sim.calls[0].schema == LOOKUP["function"]
    assert sim.calls[2].trajectory == last[:-1]
    assert sim.calls[0].traffic_date == DAY and sim.calls[0].conversation_id == "c0"
    assert (stats.rounds, stats.sent, stats.simulated, stats.replayed) == (4, 4, 3, 0)


def test_step_limit_on_max_tool_calls_keeps_the_unrun_calls(agent, warehouse):
    state, url = agent
    sim = FakeSim()
    # Two calls a step under a limit of three: the second step's two calls would make four.
    (out,) = run(warehouse, entry(url, max_tool_calls=3),
                 [user("calls=forever per_step=2 tool=lookup")], sim)
    assert out.status == "step_limit"
    assert out.error.startswith("StepLimit: 4 tool calls would pass max_tool_calls 3")
    assert (out.steps, out.tool_calls) == (2, 2)
    assert [(e["step"], e["result_source"]) for e in out.tool_trace] == [
        (0, "simulated"), (0, "simulated"), (1, None), (1, None)]
    assert [e["result"] for e in out.tool_trace[2:]] == [None, None]
    assert out.reply == "calling lookup"  # graded: the text it sent with the calls
    assert len(sim.calls) == 2 and len(state.requests) == 2


def test_max_tool_calls_zero_stops_at_the_first_call(agent, warehouse):
    _, url = agent
    (out,) = run(warehouse, entry(url, max_tool_calls=0), [user("calls=1")], FakeSim())
    assert out.status == "step_limit" and out.steps == 1 and out.tool_calls == 0
    assert [e["result"] for e in out.tool_trace] == [None]


def test_step_limit_on_max_turn_tokens(agent, warehouse):
    state, url = agent
    sim = FakeSim()
    # 50 tokens a step: 50, 100 are within 120; the third step (150) passes it.
    (out,) = run(warehouse, entry(url, max_turn_tokens=120),
                 [user("calls=forever tokens=50")], sim)
    assert out.status == "step_limit"
    assert out.error == "StepLimit: 150 completion tokens passed max_turn_tokens 120"
    assert (out.steps, out.tool_calls, out.completion_tokens) == (3, 2, 150)
    assert [e["result_source"] for e in out.tool_trace] == ["simulated", "simulated", None]
    # A turn that ends within the tokens is ok, whatever it spent on its last step.
    (done,) = run(warehouse, entry(url, max_turn_tokens=120),
                  [user("calls=2 tokens=50")], sim)
    assert done.status == "ok" and done.completion_tokens == 150


def test_a_call_answered_in_the_prefix_is_replayed_without_the_simulator(agent, warehouse):
    state, url = agent
    prefix = [
        {"role": "user", "content": 'calls=1 tool=get_weather args={"unit":"C","city":"Paris"}'},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "real_1", "type": "function", "function": {
                "name": "get_weather", "arguments": '{"city": "Paris", "unit": "C"}'}}]},
        {"role": "tool", "tool_call_id": "real_1", "content": '{"temp": 14, "sky": "rain"}'},
        {"role": "user", "content": "and now?"},
    ]
    sim = FakeSim()
    stats = LoopStats()
    (out,) = run(warehouse, entry(url), [prefix], sim, stats=stats)
    assert out.status == "ok" and out.tool_calls == 1
    (call,) = out.tool_trace
    assert call["result_source"] == "replayed"
    assert call["result"] == '{"temp": 14, "sky": "rain"}'
    assert sim.invocations == 0 and stats.replayed == 1
    assert out.reply == 'done: {"temp": 14, "sky": "rain"} | {"temp": 14, "sky": "rain"}'
    # Another argument is another call: simulated.
    other = [dict(m) for m in prefix]
    other[0] = {"role": "user", "content": 'calls=1 tool=get_weather args={"city":"Oslo"}'}
    (out,) = run(warehouse, entry(url), [other], sim)
    assert out.tool_trace[0]["result_source"] == "simulated" and len(sim.calls) == 1


def test_tool_context_reads_the_prefix():
    prefix = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "a", "type": "function",
             "function": {"name": "search", "arguments": '{"q": 1}'}},
            {"id": "b", "type": "function", "function": {"name": "fetch", "arguments": "x"}}]},
        # Answered out of order: matched by tool_call_id.
        {"role": "tool", "tool_call_id": "b", "content": "page"},
        {"role": "tool", "tool_call_id": "a", "content": [{"type": "text", "text": "hits"}]},
    ]
    ctx = tool_context(prefix, None)
    assert ctx is not None
    # Nothing declared: minimal schemas for the names seen, in order.
    assert ctx.tools == [
        {"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "fetch", "parameters": {"type": "object"}}}]
    assert ctx.schemas == {}
    assert ctx.answered == {("search", '{"q":1}'): "hits", ("fetch", "x"): "page"}
    assert tool_context([{"role": "user", "content": "hi"}], None) is None
    # A tool result answering no call names no tool: nothing to offer, today's request.
    orphan = [{"role": "user", "content": "hi"},
              {"role": "tool", "tool_call_id": "call_missing", "content": "{}"}]
    assert tool_context(orphan, None) is None
    assert tool_context([{"role": "user", "content": "hi"}], "[]") is None
    declared = tool_context([{"role": "user", "content": "hi"}], TOOLS_JSON)
    assert declared is not None and declared.tools == [WEATHER, LOOKUP]
    assert declared.schemas["get_weather"] == WEATHER["function"]
    assert canonical_arguments('{"b": 2, "a": [1, {"d": 0, "c": 1}]}') == \
        canonical_arguments({"a": [1, {"c": 1, "d": 0}], "b": 2})


def test_a_failed_step_ends_the_turn_error_with_the_trace_so_far(agent, warehouse):
    state, url = agent
    state.fail_from_step = 1
    (out,) = run(warehouse, entry(url), [user("calls=3")], FakeSim())
    assert out.status == "error"
    assert out.error.startswith("InternalServerError") and "scripted failure" in out.error
    assert out.steps == 2 and out.tool_calls == 1 and out.reply is None
    (call,) = out.tool_trace
    assert call["step"] == 0 and call["result_source"] == "simulated"


def test_a_failed_simulation_ends_the_turn_error(agent, warehouse):
    state, url = agent
    (out,) = run(warehouse, entry(url), [user("calls=3 tool=get_weather")],
                 FakeSim(fail=("get_weather",)))
    assert out.status == "error"
    assert out.error == ("ToolSimulatorError: 1 of 1 tool calls of step 0 got no result, "
                         "first: Timeout: slow")
    (call,) = out.tool_trace
    assert call["result_source"] == "simulator_error"
    assert call["result"] == SIMULATOR_FAILED_RESULT == '{"error": "tool simulator failed"}'
    assert out.steps == 1 and len(state.requests) == 1
    # A simulator that raises fails its calls the same way, with its reason.
    (out,) = run(warehouse, entry(url), [user("calls=3")], FakeSim(raise_on=1))
    assert out.status == "error" and out.error.endswith("RuntimeError: simulator crashed")
    assert out.tool_trace[0]["result_source"] == "simulator_error"


def test_calls_without_ids_get_ids_their_results_answer(agent, warehouse):
    state, url = agent
    state.no_ids = True
    (out,) = run(warehouse, entry(url), [user("calls=2 per_step=2")], FakeSim())
    assert out.status == "ok" and out.tool_calls == 4
    assert [e["id"] for e in out.tool_trace] == ["call_0_0", "call_0_1", "call_1_0", "call_1_1"]
    last = state.requests[-1]["messages"]
    assert [m["tool_call_id"] for m in last if m["role"] == "tool"] == [
        e["id"] for e in out.tool_trace]


def old_key(url: str, cand: Candidate, request: ReplayRequest) -> str:
    """The cache key as replay computed it before the loop existed (sent_params: the
    candidate's params with the per-sample seed)."""
    params = dict(cand.params)
    base = int(params.pop("seed", 0))
    params["seed"] = sample_seed(base, request.conversation_id, request.sample_index)
    return request_key(endpoint=display_endpoint(url), model=cand.model, params=params,
                       messages=request.messages, sample_index=request.sample_index)


def test_non_agentic_prefixes_keep_todays_request_and_cache_key(agent, warehouse):
    state, url = agent
    cand = entry(url, params={"temperature": 0.7, "seed": 11})
    # calls=1: the endpoint calls a tool although none was offered; without tools in the
    # prefix the turn is still today's single step, the call only recorded.
    prefixes = [user("plain question"), user("calls=1 tool=search")]
    sim = FakeSim()
    outcomes = run(warehouse, cand, prefixes, sim, tools_json=None)
    assert [o.status for o in outcomes] == ["ok", "ok"]
    assert [(o.steps, o.tool_calls) for o in outcomes] == [(1, 0), (1, 1)]
    assert outcomes[1].tool_trace == [
        {"name": "search", "arguments": '{"by": "cand", "step": 0, "j": 0}', "id": "cand_0_0"}]
    assert sim.invocations == 0 and len(state.requests) == 2
    first_text = lambda messages: messages[0]["content"]  # noqa: E731
    for body, prefix in zip(sorted(state.requests, key=lambda b: first_text(b["messages"])),
                            sorted(prefixes, key=first_text), strict=True):
        assert "tools" not in body and body["messages"] == prefix
        assert set(body) == {"model", "messages", "temperature", "seed"}
    requests = [ReplayRequest(f"c{i}", 0, p) for i, p in enumerate(prefixes)]
    keys = [old_key(url, cand, r) for r in requests]
    assert [step_key(cand, r) for r in requests] == keys
    with duckdb.connect(warehouse.database, read_only=True) as conn:
        stored = {k for (k,) in conn.execute("SELECT request_key FROM model_calls").fetchall()}
    assert stored == set(keys)
    # An agentic request differs only by its tools (part of what is sent, so of the key).
    agentic = ReplayRequest("c0", 0, prefixes[0], tools=[LOOKUP])
    assert step_key(cand, agentic) != keys[0]


def _cached_steps(warehouse) -> int:
    with duckdb.connect(warehouse.database, read_only=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM model_calls WHERE kind = 'replay' AND status = 'ok'"
        ).fetchone()[0]


def test_resume_after_the_endpoint_fails_mid_trajectory_calls_only_unanswered_steps(
        agent, warehouse):
    state, url = agent
    prefixes = [user(f"calls=4 n={i}") for i in range(3)]
    state.fail_from_step = 2  # steps 0 and 1 answered, step 2 fails
    first = run(warehouse, entry(url), prefixes, FakeSim())
    assert [o.status for o in first] == ["error"] * 3
    assert [len(o.tool_trace) for o in first] == [2, 2, 2]
    assert len(state.requests) == 9 and _cached_steps(warehouse) == 6
    state.fail_from_step = None
    state.requests.clear()
    stats = LoopStats()
    again = run(warehouse, entry(url), prefixes, FakeSim(), stats=stats)
    assert [o.status for o in again] == ["ok"] * 3
    assert [o.steps for o in again] == [5, 5, 5]
    # Steps 2, 3 and 4 of each turn: nine requests, not fifteen.
    assert len(state.requests) == 9
    assert sorted(len(r["messages"]) for r in state.requests) == [5] * 3 + [7] * 3 + [9] * 3
    assert (stats.cached, stats.sent) == (6, 9)
    # The finished trajectory is the one an uninterrupted run gives.
    state.requests.clear()
    assert [o.tool_trace for o in run(warehouse, entry(url), prefixes, FakeSim())] == [
        o.tool_trace for o in again]
    assert state.requests == []


class Killed(BaseException):
    """Stands for the process dying: nothing in the loop catches it."""


def test_resume_after_the_process_dies_after_round_two(agent, warehouse):
    state, url = agent
    prefixes = [user(f"calls=4 n={i}") for i in range(3)]
    # The second simulation (of round two's calls) never returns: the process dies.
    with pytest.raises(Killed):
        run(warehouse, entry(url), prefixes, FakeSim(raise_on=2, error=Killed()))
    assert len(state.requests) == 6 and _cached_steps(warehouse) == 6
    state.requests.clear()
    again = run(warehouse, entry(url), prefixes, FakeSim())
    assert [o.status for o in again] == ["ok"] * 3
    assert len(state.requests) == 9  # rounds 0 and 1 came from the cache
    assert min(len(r["messages"]) for r in state.requests) == 5


def test_turn_limits_are_in_the_generation_fingerprint_only_when_set():
    base = Candidate(name="a", base_url="sim", model="m")
    # Unset limits hash as before they existed: the hash of the five old settings.
    old = hashlib.sha256(json.dumps([["a", "sim", "m", {}, 1]], sort_keys=True,
                                    default=str).encode()).hexdigest()[:12]
    assert generation_fingerprint([base]) == old
    fewer = base.model_copy(update={"max_tool_calls": 2})
    capped = base.model_copy(update={"max_turn_tokens": 500})
    prints = {generation_fingerprint([c]) for c in (base, fewer, capped)}
    assert len(prints) == 3
    with pytest.raises(RegistryError, match="max_tool_calls"):
        make_candidate(name="a", base_url="sim", model="m", max_tool_calls=-1)
    with pytest.raises(RegistryError, match="max_turn_tokens"):
        make_candidate(name="a", base_url="sim", model="m", max_turn_tokens=0)


def test_step_limit_rows_are_finished_rows_for_the_check_and_the_judge():
    rows = pd.DataFrame({"status": ["ok", "step_limit", "step_limit", "error"],
                         "error": [None, "StepLimit: x", "StepLimit: y", "Boom: z"]})
    result = error_share_result(rows, 0.3)
    assert result.passed and result.metadata["errors"].value == 1
    assert not error_share_result(rows, 0.2).passed
    completion = {"status": "step_limit", "reply": "calling lookup", "conversation_id": "c",
                  "error": "StepLimit: 9 tool calls would pass max_tool_calls 8"}
    assert _ungradable(completion, {"c": "[]"}) is None
    assert _ungradable({**completion, "status": "error"}, {"c": "[]"}) is not None


def test_example_trajectories_show_the_longest_turns_with_their_sources(agent, warehouse):
    _, url = agent
    cand = entry(url, max_tool_calls=2)
    prefixes = [user("calls=1"), user("calls=forever"), user("nothing")]
    outcomes = run(warehouse, cand, prefixes, FakeSim())
    requests = [ReplayRequest(f"c{i}", 0, p) for i, p in enumerate(prefixes)]
    frame = _rows("agent", DAY, requests, outcomes, endpoint=url, model="scripted",
                  params="{}", entry=cand)
    assert frame["steps"].tolist() == [2, 3, 1] and frame["tool_calls"].tolist() == [1, 2, 0]
    assert frame["status"].tolist() == ["ok", "step_limit", "ok"]
    examples = trajectory_examples(frame)
    assert examples["conversation_id"].tolist() == ["c1", "c0"]
    assert examples["calls"].iloc[0].count("[simulated]") == 2
    assert examples["calls"].iloc[0].endswith("[None]")
