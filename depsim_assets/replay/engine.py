"""Regenerate final replies: bounded-concurrency async calls, one outcome per request.

A failed call is an outcome (status ``error`` with its class and message), never a missing
row. Nothing here touches the warehouse: callers read prefixes, release the connection,
call this, then write.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import openai

from depsim_assets.endpoints import describe_error

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ReplayRequest:
    """One prefix x sample to regenerate."""

    conversation_id: str
    sample_index: int
    messages: list[dict[str, Any]]


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


def sample_seed(base_seed: int, conversation_id: str, sample_index: int) -> int:
    """The seed sent for one conversation's k-th sample: stable across runs, distinct per
    conversation and k. Real traffic repeats prefixes ("hi"); one seed for all of them would
    make their samples identical and the rates overdispersed."""
    digest = hashlib.sha256(f"{base_seed}|{conversation_id}|{sample_index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


async def run_bounded(
    items: Sequence[T],
    worker: Callable[[T], Awaitable[R]],
    *,
    concurrency: int,
    on_done: Callable[[int], None] | None = None,
) -> list[R]:
    """Run ``worker`` over ``items`` with at most ``concurrency`` in flight; keep input order."""
    semaphore = asyncio.Semaphore(concurrency)
    done = 0

    async def one(item: T) -> R:
        nonlocal done
        async with semaphore:
            result = await worker(item)
        done += 1
        if on_done is not None:
            on_done(done)
        return result

    return await asyncio.gather(*(one(item) for item in items))


def _reasoning_of(message: Any) -> str | None:
    # Servers that expose reasoning put it in a non-standard field (vLLM, DeepSeek, llama.cpp).
    extra = getattr(message, "model_extra", None) or {}
    for key in ("reasoning_content", "reasoning"):
        value = extra.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def sent_params(params: dict[str, Any], request: ReplayRequest) -> dict[str, Any]:
    """The generation parameters actually sent for ``request`` (the seed made per sample)."""
    out = dict(params)
    base_seed = int(out.pop("seed", 0))
    out["seed"] = sample_seed(base_seed, request.conversation_id, request.sample_index)
    return out


async def complete_one(
    client: openai.AsyncOpenAI,
    request: ReplayRequest,
    *,
    model: str,
    params: dict[str, Any],
) -> ReplayOutcome:
    """Regenerate one final reply; any failure becomes an ``error`` outcome."""
    started = time.perf_counter()
    try:
        response = await client.chat.completions.create(
            model=model, messages=request.messages, **sent_params(params, request)
        )
    except (openai.OpenAIError, OSError, ValueError) as exc:
        return ReplayOutcome(
            status="error",
            error=describe_error(exc),
            latency_ms=(time.perf_counter() - started) * 1000,
        )
    latency_ms = (time.perf_counter() - started) * 1000
    if not response.choices:
        return ReplayOutcome(
            status="error", error="EmptyResponse: no choices", latency_ms=latency_ms
        )
    message = response.choices[0].message
    tool_trace = [
        {"name": call.function.name, "arguments": call.function.arguments}
        for call in (message.tool_calls or [])
        if getattr(call, "function", None) is not None
    ]
    usage = response.usage
    if not message.content and not tool_trace:
        return ReplayOutcome(
            status="error", error="EmptyReply: the endpoint returned no text", latency_ms=latency_ms
        )
    return ReplayOutcome(
        status="ok",
        reply=message.content or "",
        reasoning=_reasoning_of(message),
        tool_trace=tool_trace,
        prompt_tokens=usage.prompt_tokens if usage else 0,
        completion_tokens=usage.completion_tokens if usage else 0,
        latency_ms=latency_ms,
    )


def params_json(params: dict[str, Any]) -> str:
    """Generation parameters as stored: canonical JSON."""
    return json.dumps(params, sort_keys=True)
