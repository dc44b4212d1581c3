"""The agentic loop of replay (issue #14): a candidate's turn runs until its final reply.

A prefix is agentic when its conversation declared tools (``tools_json``) or it already holds
tool calls or results. Its turn is a trajectory of candidate *steps*: each step is one
chat completion asked through the caller's ``ask`` (the model layer's ``answer_all``, so every
step is cached as it arrives and a rerun after a kill calls only the steps never answered).
A step without tool calls ends the turn ``ok``. A step with tool calls either ends it
``step_limit`` (the calls would pass ``max_tool_calls``, or the turn's completion tokens pass
``max_turn_tokens``; the unrun calls stay in the trace with no result) or gets one result per
call: the prefix's real result when the same call (name and canonical JSON arguments) was
already answered there (``replayed``, no call), else the tool simulator's (``simulated``).
The assistant message with its calls and one ``tool`` message per call are appended, and the
turn goes to the next round. Every open turn takes one step per round, so a round is one
``answer_all`` over all of them and one simulator call over all their tool calls.

A non-agentic prefix takes exactly one step, today's: the same request, so the same cache key,
and its outcome unchanged. A failed step ends the turn with the step's status and the trace so
far; a failed simulation gives the call the result ``{"error": "tool simulator failed"}``
(``simulator_error``) and ends the turn ``error``, never scored as a clean turn.

Trace entries follow :mod:`depsim_assets.toolsim`: step, id, name, arguments, result,
result_source, content (the assistant text sent with the step's calls, on its first entry).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from dagster_duckdb import DuckDBResource

from depsim_assets import toolsim
from depsim_assets.endpoints import async_client, describe_error, display_endpoint, resolve_base_url
from depsim_assets.messages import message_text
from depsim_assets.models import (
    NOT_ATTEMPTED,
    OK,
    Answers,
    CallEngine,
    TokenCounter,
    answer_all,
    request_key,
)
from depsim_assets.registry import Candidate
from depsim_assets.replay.batch import batch_calls
from depsim_assets.replay.engine import (
    REPLY_CODEC,
    ReplayOutcome,
    ReplayRequest,
    not_attempted,
    reply_worker,
    request_params,
    sent_params,
)
from depsim_assets.replay.tools import ToolCall, ToolResult

STEP_LIMIT = "step_limit"
ERROR = "error"
# Error classes of the turns the loop ends itself (the text before the colon).
STEP_LIMIT_ERROR = "StepLimit"
TOOL_SIMULATOR_ERROR = "ToolSimulatorError"
# What the candidate is shown when the simulator failed on its call.
SIMULATOR_FAILED_RESULT = json.dumps({"error": "tool simulator failed"})

# One round of candidate steps: the model layer's answers, one per request, in order.
AskStep = Callable[[list[ReplayRequest]], Awaitable[Answers[ReplayOutcome]]]
# The tool simulator: one result per call, in order.
SimulateTools = Callable[[list[ToolCall]], Awaitable[list[ToolResult]]]


def canonical_arguments(arguments: Any) -> str:
    """A call's arguments as canonical JSON (sorted keys, no spaces), so ``{"a": 1, "b": 2}``
    and ``{"b":2,"a":1}`` are the same call; text that is not JSON is kept as stripped."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return arguments.strip()
    return json.dumps(arguments, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _calls_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    calls = message.get("tool_calls") if message.get("role") == "assistant" else None
    return [c for c in calls or [] if isinstance(c, dict) and isinstance(c.get("function"), dict)]


@dataclass(frozen=True)
class ToolContext:
    """What the loop knows of a prefix's tools: the ``tools`` sent with every step, the
    declared schemas by name, and the prefix's real results by (name, canonical arguments)."""

    tools: list[dict[str, Any]]
    schemas: dict[str, dict[str, Any]]
    answered: dict[tuple[str, str], str]


def tool_context(messages: list[dict[str, Any]], tools_json: str | None) -> ToolContext | None:
    """The prefix's :class:`ToolContext`; None when the prefix is not agentic (no declared
    tools, no tool call or result in it): it is replayed with today's single request."""
    declared = json.loads(tools_json) if tools_json else None
    declared = [t for t in declared if isinstance(t, dict)] if isinstance(declared, list) else []
    has_tool_turns = any(m.get("role") == "tool" or _calls_of(m) for m in messages)
    if not declared and not has_tool_turns:
        return None
    schemas = {
        str(t["function"]["name"]): t["function"]
        for t in declared
        if isinstance(t.get("function"), dict) and t["function"].get("name")
    }
    # Real results of the prefix's calls: a tool message answers the call with its
    # tool_call_id, else (ids missing in the log) the oldest call still unanswered.
    answered: dict[tuple[str, str], str] = {}
    open_calls: list[tuple[str | None, tuple[str, str]]] = []
    seen: list[str] = []
    for message in messages:
        for call in _calls_of(message):
            name = str(call["function"].get("name") or "")
            seen.append(name)
            key = (name, canonical_arguments(call["function"].get("arguments") or ""))
            open_calls.append((call.get("id"), key))
        if message.get("role") == "tool" and open_calls:
            wanted = message.get("tool_call_id")
            match = next((i for i, (cid, _) in enumerate(open_calls) if cid and cid == wanted),
                         0)
            _, key = open_calls.pop(match)
            # The first answer is kept: "the same call answered earlier" is the earliest one.
            answered.setdefault(key, message_text(message))
        elif message.get("role") == "tool" and isinstance(message.get("name"), str):
            seen.append(message["name"])
    if declared:
        tools = declared
    else:
        # Nothing declared: minimal schemas for the names the prefix used, so the candidate
        # may call them again (a schema it never saw would be made up).
        tools = [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
                 for n in dict.fromkeys(n for n in seen if n)]
    if not tools:
        # Tool results without a named call (an orphan in the log): there is no tool to
        # offer, and servers refuse an empty ``tools`` list, so the turn is today's request.
        return None
    return ToolContext(tools=tools, schemas=schemas, answered=answered)


@dataclass
class LoopStats:
    """Counts of one replay's loop, for the asset's metadata."""

    rounds: int = 0
    requests: int = 0  # candidate steps asked (cached or not)
    cached: int = 0  # answered from the response cache
    sent: int = 0  # answered by the endpoint in this run
    not_attempted: int = 0
    replayed: int = 0  # tool results taken from the prefix
    simulated: int = 0  # tool results from the simulator
    simulator_errors: int = 0


@dataclass
class _Turn:
    request: ReplayRequest
    context: ToolContext | None
    messages: list[dict[str, Any]]
    trace: list[dict[str, Any]] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    steps: int = 0
    tool_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    attempts: int = 0
    outcome: ReplayOutcome | None = None  # set when the turn ended

    def absorb(self, out: ReplayOutcome) -> None:
        self.steps += out.status != NOT_ATTEMPTED  # a step the budget stopped made no call
        self.prompt_tokens += out.prompt_tokens
        self.completion_tokens += out.completion_tokens
        self.latency_ms += out.latency_ms
        self.attempts += out.attempts
        if out.reasoning:
            self.reasoning.append(out.reasoning)

    def end(self, status: str, *, reply: str | None = None, error: str | None = None) -> None:
        self.outcome = ReplayOutcome(
            status=status, reply=reply, reasoning="\n\n".join(self.reasoning) or None,
            tool_trace=self.trace, error=error, prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens, latency_ms=self.latency_ms,
            attempts=self.attempts, steps=self.steps, tool_calls=self.tool_calls)


def single_step(out: ReplayOutcome) -> ReplayOutcome:
    """A non-agentic turn's outcome: its one step as it came back, with its counts."""
    return replace(out, steps=int(out.status != NOT_ATTEMPTED), tool_calls=len(out.tool_trace))


def _step_calls(out: ReplayOutcome, step: int) -> list[dict[str, Any]]:
    """The step's tool calls as trace entries (results still to come)."""
    entries = []
    for i, call in enumerate(out.tool_trace):
        entries.append({
            "step": step,
            # Some servers send no id; the tool message must still name its call.
            "id": call.get("id") or f"call_{step}_{i}",
            "name": str(call.get("name") or ""),
            "arguments": call.get("arguments") or "",
            "result": None,
            "result_source": None,
            "content": (out.reply or None) if i == 0 else None,
        })
    return entries


def _assistant_message(out: ReplayOutcome, entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": out.reply or None,
        "tool_calls": [
            {"id": e["id"], "type": "function",
             "function": {"name": e["name"], "arguments": e["arguments"]}}
            for e in entries
        ],
    }


def _over_limit(turn: _Turn, new_calls: int, *, max_tool_calls: int,
                max_turn_tokens: int | None) -> str | None:
    if turn.tool_calls + new_calls > max_tool_calls:
        return (f"{STEP_LIMIT_ERROR}: {turn.tool_calls + new_calls} tool calls would pass "
                f"max_tool_calls {max_tool_calls}")
    if max_turn_tokens is not None and turn.completion_tokens > max_turn_tokens:
        return (f"{STEP_LIMIT_ERROR}: {turn.completion_tokens} completion tokens passed "
                f"max_turn_tokens {max_turn_tokens}")
    return None


async def run_turns(
    requests: Sequence[ReplayRequest],
    contexts: Sequence[ToolContext | None],
    *,
    traffic_date: str,
    ask: AskStep,
    simulate: SimulateTools,
    max_tool_calls: int,
    max_turn_tokens: int | None,
    stats: LoopStats | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> list[ReplayOutcome]:
    """One outcome per request, in order: each turn run to its final reply or its limit.

    ``contexts[i]`` is request i's :func:`tool_context` (None: a non-agentic prefix, one
    step exactly as today). ``stats`` is filled in as the rounds go, so a caller that is
    interrupted still knows what was done.
    """
    stats = stats if stats is not None else LoopStats()
    turns = [_Turn(request=req, context=ctx, messages=list(req.messages))
             for req, ctx in zip(requests, contexts, strict=True)]
    open_turns = list(range(len(turns)))
    agentic = any(ctx is not None for ctx in contexts)
    step = -1
    while open_turns:
        step += 1  # every open turn takes its step-th step in this round
        asked = [
            ReplayRequest(turns[i].request.conversation_id, turns[i].request.sample_index,
                          turns[i].messages, tools=ctx.tools if (ctx := turns[i].context) else None)
            for i in open_turns
        ]
        answers = await ask(asked)
        stats.rounds += 1
        stats.requests += len(asked)
        stats.cached += answers.cached
        stats.sent += answers.sent
        stats.not_attempted += answers.not_attempted
        waiting: list[tuple[int, dict[str, Any], ToolCall]] = []
        continuing: list[int] = []
        for i, out in zip(open_turns, answers.outcomes, strict=True):
            turn = turns[i]
            if turn.context is None:
                turn.outcome = single_step(out)
                continue
            turn.absorb(out)
            if out.status != OK:
                turn.end(out.status, error=out.error)
                continue
            entries = _step_calls(out, step)
            if not entries:
                turn.end(OK, reply=out.reply)
                continue
            turn.trace.extend(entries)
            limit = _over_limit(turn, len(entries), max_tool_calls=max_tool_calls,
                                max_turn_tokens=max_turn_tokens)
            if limit is not None:
                # The calls were made by the candidate but never run: in the trace, no result.
                turn.end(STEP_LIMIT, reply=out.reply or "", error=limit)
                continue
            turn.tool_calls += len(entries)
            turn.messages.append(_assistant_message(out, entries))
            for entry in entries:
                key = (entry["name"], canonical_arguments(entry["arguments"]))
                real = turn.context.answered.get(key)
                if real is not None:
                    entry["result"], entry["result_source"] = real, toolsim.RESULT_REPLAYED
                    stats.replayed += 1
                    continue
                waiting.append((i, entry, ToolCall(
                    conversation_id=turn.request.conversation_id,
                    traffic_date=traffic_date,
                    name=entry["name"],
                    arguments=entry["arguments"],
                    schema=turn.context.schemas.get(entry["name"]),
                    trajectory=list(turn.messages),
                )))
            continuing.append(i)
        # Why the simulator failed a turn's call (the first failure of the turn's step).
        failures: dict[int, list[str]] = {}
        if waiting:
            results = await _simulate_all(simulate, [call for _, _, call in waiting])
            for (i, entry, _), result in zip(waiting, results, strict=True):
                if result.error is not None or result.source == toolsim.RESULT_SIMULATOR_ERROR:
                    entry["result"] = SIMULATOR_FAILED_RESULT
                    entry["result_source"] = toolsim.RESULT_SIMULATOR_ERROR
                    failures.setdefault(i, []).append(result.error or "no result")
                    stats.simulator_errors += 1
                else:
                    entry["result"] = result.text
                    entry["result_source"] = toolsim.RESULT_SIMULATED
                    stats.simulated += 1
        open_turns = []
        for i in continuing:
            turn = turns[i]
            new = [e for e in turn.trace if e["step"] == step]
            for entry in new:
                turn.messages.append(
                    {"role": "tool", "tool_call_id": entry["id"], "content": entry["result"]})
            if i in failures:
                reasons = failures[i]
                turn.end(ERROR, error=f"{TOOL_SIMULATOR_ERROR}: {len(reasons)} of {len(new)} "
                         f"tool calls of step {step} got no result, first: {reasons[0]}")
            else:
                open_turns.append(i)
        if agentic:
            log(f"agentic step {step}: {len(asked)} turns asked ({answers.cached} cached), "
                f"{len(waiting)} tool calls to the simulator, {len(open_turns)} turns go on")
    outcomes = [turn.outcome for turn in turns]
    assert all(o is not None for o in outcomes), "a turn left the loop without an outcome"
    return [o for o in outcomes if o is not None]


async def _simulate_all(simulate: SimulateTools, calls: list[ToolCall]) -> list[ToolResult]:
    """The simulator's results; a simulator that raises fails every call of the round (as
    results, so each turn ends ``error`` with its trace instead of the run losing them)."""
    try:
        results = await simulate(calls)
    except Exception as exc:  # noqa: BLE001 - any failure of the simulator is the calls' error
        reason = describe_error(exc)
        return [ToolResult(text=SIMULATOR_FAILED_RESULT, source=toolsim.RESULT_SIMULATOR_ERROR,
                           error=reason, prompt_tokens=0, completion_tokens=0) for _ in calls]
    if len(results) != len(calls):
        reason = f"the simulator returned {len(results)} results for {len(calls)} calls"
        return [ToolResult(text=SIMULATOR_FAILED_RESULT, source=toolsim.RESULT_SIMULATOR_ERROR,
                           error=reason, prompt_tokens=0, completion_tokens=0) for _ in calls]
    return results


def step_key(entry: Candidate, request: ReplayRequest) -> str:
    """The cache key of one candidate step: endpoint, model, the parameters sent (the
    ``tools`` of an agentic step among them), the messages so far and the sample index. A
    non-agentic request sends no ``tools``, so its key is the one replay always used."""
    params = request_params(entry.params, entry.max_tokens)
    return request_key(endpoint=display_endpoint(entry.base_url), model=entry.model,
                       params=sent_params(params, request), messages=request.messages,
                       sample_index=request.sample_index)


async def replay_with_cache(
    warehouse: DuckDBResource,
    entry: Candidate,
    requests: Sequence[ReplayRequest],
    contexts: Sequence[ToolContext | None],
    *,
    engine: CallEngine,
    simulate: SimulateTools,
    traffic_date: str,
    partition_key: str,
    stats: LoopStats | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> list[ReplayOutcome]:
    """Every request's turn, each step through :func:`~depsim_assets.models.answer_all`
    (kind ``replay``: cached as it arrives, online or through the Batch API)."""
    endpoint = display_endpoint(entry.base_url)
    params = request_params(entry.params, entry.max_tokens)
    stats = stats if stats is not None else LoopStats()
    # The engine retries and counts every attempt; the client's own retries are off.
    client = async_client(entry.base_url, api_key_env=entry.api_key_env,
                          timeout_s=entry.timeout_s, max_retries=0,
                          max_connections=entry.max_concurrency)
    # The server's tokenizer (llama.cpp's /tokenize) when the window is known and it has one.
    counter = TokenCounter(resolve_base_url(entry.base_url) if entry.context_window else None,
                           timeout_s=min(entry.timeout_s, 30.0))
    worker = reply_worker(
        client, engine=engine, model=entry.model, params=params,
        cost=lambda out: entry.cost_usd(out.prompt_tokens, out.completion_tokens),
        context_window=entry.context_window, counter=counter)
    batch = batch_calls(entry, partition_key=partition_key) if entry.mode == "batch" else None

    rounds = 0

    async def ask(step_requests: list[ReplayRequest]) -> Answers[ReplayOutcome]:
        nonlocal rounds
        step, rounds = rounds, rounds + 1

        def announce(cached: int, pending: int) -> None:
            where = f" (agentic step {step})" if step else ""
            log(f"replay {entry.name}{where}: {cached} answers cached, {pending} to call")

        return await answer_all(
            warehouse, step_requests, kind="replay", endpoint=endpoint, model=entry.model,
            key=lambda request: step_key(entry, request), call=worker,
            skipped=not_attempted, codec=REPLY_CODEC, engine=engine, batch=batch,
            on_lookup=announce, log=log)

    async with client:
        return await run_turns(
            requests, contexts, traffic_date=traffic_date, ask=ask, simulate=simulate,
            max_tool_calls=entry.max_tool_calls, max_turn_tokens=entry.max_turn_tokens,
            stats=stats, log=log)
