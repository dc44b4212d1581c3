"""Regenerate final replies through the call engine, one outcome per request.

A failed call is an outcome (status ``error`` with its class and message; ``not_attempted``
when the run's budget stopped it), never a missing row. Nothing here touches the warehouse:
callers read prefixes, release the connection, call this, then write.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import openai

from depsim_assets.models import (
    BUDGET_REACHED,
    CONTEXT_LENGTH_EXCEEDED,
    ERROR,
    NOT_ATTEMPTED,
    OK,
    CallEngine,
    Codec,
    TokenCounter,
)


@dataclass(frozen=True)
class ReplayRequest:
    """One prefix x sample to regenerate."""

    conversation_id: str
    sample_index: int
    messages: list[dict[str, Any]]
    # The OpenAI ``tools`` sent with an agentic prefix's steps; None (not sent) otherwise, so
    # a non-agentic request is today's, byte for byte, and keeps its cache key.
    tools: list[dict[str, Any]] | None = None


@dataclass
class ReplayOutcome:
    """What came back for one request."""

    status: str
    reply: str | None = None
    reasoning: str | None = None
    tool_trace: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    attempts: int = 0
    # Candidate calls in the turn and tool calls it made (the agentic loop sums its steps).
    steps: int = 1
    tool_calls: int = 0


def sample_seed(base_seed: int, conversation_id: str, sample_index: int) -> int:
    """The seed sent for one conversation's k-th sample: stable across runs, distinct per
    conversation and k. Real traffic repeats prefixes ("hi"); one seed for all of them would
    make their samples identical and the rates overdispersed."""
    digest = hashlib.sha256(f"{base_seed}|{conversation_id}|{sample_index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def _reasoning_of(message: Any) -> str | None:
    # Servers that expose reasoning put it in a non-standard field (vLLM, DeepSeek, llama.cpp).
    extra = getattr(message, "model_extra", None) or {}
    for key in ("reasoning_content", "reasoning"):
        value = extra.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def request_params(params: dict[str, Any], max_tokens: int | None) -> dict[str, Any]:
    """A candidate's generation parameters with its ``max_tokens`` cap (registry field) added,
    unless the parameters already set one."""
    out = dict(params)
    if max_tokens and "max_tokens" not in out and "max_completion_tokens" not in out:
        out["max_tokens"] = int(max_tokens)
    return out


def sent_params(params: dict[str, Any], request: ReplayRequest) -> dict[str, Any]:
    """The generation parameters actually sent for ``request`` (the seed made per sample)."""
    out = dict(params)
    base_seed = int(out.pop("seed", 0))
    out["seed"] = sample_seed(base_seed, request.conversation_id, request.sample_index)
    if request.tools is not None:
        out["tools"] = request.tools
    return out


async def attempt_reply(
    client: openai.AsyncOpenAI,
    request: ReplayRequest,
    *,
    model: str,
    params: dict[str, Any],
) -> ReplayOutcome:
    """One attempt at regenerating a final reply.

    Transport failures (429, 5xx, timeouts, dropped connections) raise, for the engine to
    retry; an answer without text is a final ``error`` outcome.
    """
    started = time.perf_counter()
    # Messages are the log's JSON as it was (any role and field a server takes); the
    # client's TypedDicts cannot describe that, and the server validates them anyway.
    create: Any = client.chat.completions.create
    response = await create(model=model, messages=request.messages, **sent_params(params, request))
    outcome = outcome_of(response)
    outcome.latency_ms = (time.perf_counter() - started) * 1000
    return outcome


def outcome_of(response: Any) -> ReplayOutcome:
    """The outcome a chat-completions response stands for (online and batch alike): the
    reply, reasoning, tool trace and tokens; an ``error`` when it holds no reply."""
    if not response.choices:
        return ReplayOutcome(status="error", error="EmptyResponse: no choices")
    message = response.choices[0].message
    tool_trace = [
        # The id (when the server sends one) is what the agentic loop's tool message answers.
        {"name": call.function.name, "arguments": call.function.arguments,
         **({"id": call.id} if getattr(call, "id", None) else {})}
        for call in (message.tool_calls or [])
        if getattr(call, "function", None) is not None
    ]
    if not message.content and not tool_trace:
        return ReplayOutcome(status="error", error="EmptyReply: the endpoint returned no text")
    usage = response.usage
    return ReplayOutcome(
        status="ok",
        reply=message.content or "",
        reasoning=_reasoning_of(message),
        tool_trace=tool_trace,
        prompt_tokens=usage.prompt_tokens if usage else 0,
        completion_tokens=usage.completion_tokens if usage else 0,
        tool_calls=len(tool_trace),
    )


def approx_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """A cheap size estimate for the tokens-per-minute bucket (about 4 characters a token)."""
    return sum(len(str(m.get("content") or "")) for m in messages) // 4 + 4 * len(messages)


def reply_worker(
    client: openai.AsyncOpenAI,
    *,
    engine: CallEngine,
    model: str,
    params: dict[str, Any],
    cost: Callable[[ReplayOutcome], float] | None = None,
    context_window: int | None = None,
    counter: TokenCounter | None = None,
) -> Callable[[ReplayRequest], Awaitable[ReplayOutcome]]:
    """What regenerates one request through ``engine``: its final outcome, never an exception.

    With ``context_window``, a prompt surely longer than the window (counted by ``counter``:
    the server's tokenizer, else a low estimate) ends as an ``error`` outcome with reason
    ``context_length_exceeded`` and no request; a server's own context error ends the same.
    """
    max_tokens = int(params.get("max_tokens") or params.get("max_completion_tokens") or 0)
    counter = counter or TokenCounter(None)

    async def too_long(request: ReplayRequest) -> str | None:
        if not context_window:
            return None
        text = "\n".join(str(m.get("content") or "") for m in request.messages)
        if request.tools is not None:  # the schemas are in the prompt too
            text += "\n" + json.dumps(request.tools)
        n = await counter.count(text, lower_bound=True)
        if n + max_tokens <= context_window:
            return None
        how = "counted by the server's tokenizer" if counter.exact else "at least, estimated"
        return (f"{CONTEXT_LENGTH_EXCEEDED}: the prompt has {n} tokens ({how}) and max_tokens "
                f"is {max_tokens}; the context window is {context_window}; no request made")

    async def work(request: ReplayRequest) -> ReplayOutcome:
        reason = await too_long(request)
        if reason is not None:
            return ReplayOutcome(status=ERROR, error=reason)
        result = await engine.call(
            lambda: attempt_reply(client, request, model=model, params=params),
            tokens=approx_prompt_tokens(request.messages) + max_tokens,
            usage=lambda out: out.prompt_tokens + out.completion_tokens,
            cost=cost,
        )
        if result.status == OK and result.value is not None:
            outcome = result.value
        else:  # error, or not_attempted when the budget ran out while it waited
            outcome = ReplayOutcome(status=result.status, error=result.error)
        outcome.attempts = result.attempts
        return outcome

    return work


def not_attempted(_: object = None) -> ReplayOutcome:
    """The outcome of a request the run's budget stopped before it started."""
    return ReplayOutcome(status=NOT_ATTEMPTED, error=BUDGET_REACHED, steps=0)


def _payload(outcome: ReplayOutcome) -> dict[str, Any]:
    return asdict(outcome)


def _from_payload(payload: dict[str, Any]) -> ReplayOutcome:
    return ReplayOutcome(**payload)


# How a replay outcome is stored in the response cache: as a whole, under its own status.
REPLY_CODEC: Codec[ReplayOutcome] = Codec(
    to_payload=_payload,
    from_payload=_from_payload,
    status=lambda out: out.status,
    tokens=lambda out: (out.prompt_tokens, out.completion_tokens),
)


async def replay_requests(
    client: openai.AsyncOpenAI,
    requests: Sequence[ReplayRequest],
    *,
    engine: CallEngine,
    model: str,
    params: dict[str, Any],
    cost: Callable[[ReplayOutcome], float] | None = None,
    context_window: int | None = None,
    counter: TokenCounter | None = None,
) -> list[ReplayOutcome]:
    """Regenerate every request through ``engine``, uncached: one outcome each, in input
    order (for measuring the engine; the replay asset goes through
    :func:`depsim_assets.models.answer_all`, which caches and stores)."""
    work = reply_worker(client, engine=engine, model=model, params=params, cost=cost,
                        context_window=context_window, counter=counter)
    return await engine.map(requests, work, skipped=not_attempted,
                            status=lambda out: out.status)


def params_json(params: dict[str, Any]) -> str:
    """Generation parameters as stored: canonical JSON."""
    return json.dumps(params, sort_keys=True)
