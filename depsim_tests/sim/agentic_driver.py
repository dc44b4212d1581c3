"""Whole agentic turns in-process, for the simulator's tests: persona, sim tool simulator,
persona ... until a final reply or the call limit, then the sim judge on the real judge
prompt (``judging.judge.judge_messages``, the TOOL TRACE section included).

The loop mirrors the replay stage's contract (toolsim.py trace entries, ``step_limit`` when a
turn would pass its calls) so the planted truth and the judge's recall can be measured
without Dagster; the e2e test runs the real loop.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from depsim_assets.judging.judge import judge_messages
from depsim_assets.sim.agentic import TOOL_BEHAVIOURS, parse_tools, plan_turn, respond
from depsim_assets.sim.judge import grade_request
from depsim_assets.sim.tool_sim import simulate_result
from depsim_assets.taxonomy import CATEGORY_IDS, load_taxonomy
from depsim_assets.toolsim import RESULT_SIMULATED, SimulatorRequest, ToolExample
from depsim_demo.synth import agentic_lines

TAXONOMY = load_taxonomy()
SCHEMA = {"type": "object",
          "properties": {**{c: {"type": "integer"} for c in CATEGORY_IDS},
                         "findings": {"type": "array"}}}


@dataclass
class Turn:
    """One finished (or cut) agentic turn."""

    conversation_id: str
    status: str  # ok or step_limit
    reply: str
    trace: list[dict[str, Any]]
    truth: tuple[str, ...]  # the plan's tool-dependent behaviours
    flagged: frozenset[str]  # what the sim judge flagged (severity >= 2)


def agentic_prefixes(date: str, n: int, seed: int = 7):
    """(conversation id, prefix, tools) of the synthetic agentic day."""
    for line in agentic_lines(date, n, seed=seed):
        record = json.loads(line.text)
        yield record["conversation_id"], record["messages"][:-1], record["tools"]


def _examples(prefix: list[dict[str, Any]], name: str) -> list[ToolExample]:
    calls = {}
    out = []
    for message in prefix:
        for call in message.get("tool_calls") or []:
            calls[call["id"]] = call["function"]
        if message.get("role") == "tool":
            fn = calls.get(message.get("tool_call_id"))
            if fn is not None and fn["name"] == name:
                out.append(ToolExample(fn["arguments"], str(message.get("content"))))
    return out


def _seed(cid: str, model: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{cid}|{model}".encode()).digest()[:4], "big")


def run_turn(model: str, cid: str, prefix: list[dict[str, Any]], tools: list[Any], *,
             max_tool_calls: int = 8, realism: float = 0.9,
             temperature: float | None = None) -> Turn:
    """One agentic turn of ``model`` on ``prefix`` with the sim tool simulator."""
    seed = _seed(cid, model)
    schemas = {t["function"]["name"]: t["function"].get("parameters") for t in tools}
    messages = list(prefix)
    trace: list[dict[str, Any]] = []
    status, reply_text = "ok", ""
    for step in range(max_tool_calls + 1):
        reply = respond(model, messages, seed, tools=tools, temperature=temperature)
        if not reply.tool_calls:
            reply_text = reply.text
            break
        if len(trace) + len(reply.tool_calls) > max_tool_calls:
            status = "step_limit"
            trace.extend({"step": step, "id": c["id"], "name": c["function"]["name"],
                          "arguments": c["function"]["arguments"], "result": None,
                          "result_source": None, "content": None} for c in reply.tool_calls)
            break
        messages.append({"role": "assistant", "content": None, "tool_calls": reply.tool_calls})
        for call in reply.tool_calls:
            fn = call["function"]
            request = SimulatorRequest(fn["name"], schemas.get(fn["name"]),
                                       _examples(prefix, fn["name"]), list(messages),
                                       fn["arguments"])
            result = simulate_result(request, realism)
            trace.append({"step": step, "id": call["id"], "name": fn["name"],
                          "arguments": fn["arguments"], "result": result,
                          "result_source": RESULT_SIMULATED, "content": None})
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": result})
    history = prefix[: max(i for i, m in enumerate(prefix) if m["role"] == "user") + 1]
    plan = plan_turn(model, history, seed, parse_tools(tools), temperature=temperature)
    judged = judge_messages(TAXONOMY, prefix=prefix, reply=reply_text, reasoning=None,
                            tool_trace=trace or None, flag_threshold=2,
                            fence_token="f" * 16)
    grades = grade_request(judged, SCHEMA, TAXONOMY)
    flagged = frozenset(c for c in TOOL_BEHAVIOURS if grades[c] >= 2)
    return Turn(cid, status, reply_text, trace, plan.behaviours, flagged)
