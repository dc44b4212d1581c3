"""Replay through the OpenAI Batch API (``mode: batch`` in ``candidates.yaml``).

The Batch API itself (submit, persist, poll, resume, collect) is the model layer's
(:mod:`depsim_assets.models.batch`); here is what is replay's: a request's batch line is
exactly what the online path sends, a line's result becomes a :class:`ReplayOutcome` by the
online path's rules, and a request's cost is estimated for the run's budget before the
batch is submitted.
"""

from __future__ import annotations

from typing import Any

import pydantic
from openai.types.chat import ChatCompletion

from depsim_assets.models import BatchCalls, BatchResult, BatchSettings, approx_tokens
from depsim_assets.models.batch import error_text
from depsim_assets.registry import Candidate
from depsim_assets.replay.engine import (
    ReplayOutcome,
    ReplayRequest,
    outcome_of,
    request_params,
    sent_params,
)

# Client options the online call takes as keyword arguments: not part of a request body.
_CLIENT_OPTIONS = ("extra_headers", "extra_query", "timeout")
# Reply length assumed for a budget estimate when the candidate sets no max_tokens: the
# estimate is what keeps a batch within the budget, and without a cap nothing bounds it.
ASSUMED_REPLY_TOKENS = 1024


def request_body(entry: Candidate, request: ReplayRequest) -> dict[str, Any]:
    """The chat-completions body of one request, as the online path sends it."""
    params = sent_params(request_params(entry.params, entry.max_tokens), request)
    extra = params.pop("extra_body", None) or {}
    for option in _CLIENT_OPTIONS:
        params.pop(option, None)
    return {"model": entry.model, "messages": request.messages, **params, **extra}


def outcome_from_body(body: Any) -> ReplayOutcome:
    """The outcome of one chat-completions response body, by the online path's rules."""
    try:
        response = ChatCompletion.model_validate(body)
    except pydantic.ValidationError as exc:
        return ReplayOutcome(status="error", error=error_text("InvalidResponse", str(exc)))
    return outcome_of(response)


def outcome_from_result(result: BatchResult) -> ReplayOutcome:
    """The outcome of one batch line's result."""
    if result.error is not None:
        return ReplayOutcome(status="error", error=result.error)
    return outcome_from_body(result.body)


def estimate_usd(entry: Candidate, request: ReplayRequest) -> float:
    """An upper estimate of one request's cost: its prompt (3.5 characters a token, plus a
    few a message for the chat template) and a reply of ``max_tokens``
    (:data:`ASSUMED_REPLY_TOKENS` when no cap is set)."""
    params = request_params(entry.params, entry.max_tokens)
    reply = int(params.get("max_tokens") or params.get("max_completion_tokens")
                or ASSUMED_REPLY_TOKENS)
    prompt = sum(approx_tokens(str(m.get("content") or "")) + 4 for m in request.messages)
    return entry.cost_usd(prompt, reply)


def batch_calls(entry: Candidate, *, partition_key: str) -> BatchCalls[ReplayRequest,
                                                                        ReplayOutcome]:
    """How :func:`depsim_assets.models.answer_all` sends a candidate's requests as batches."""
    return BatchCalls(
        settings=BatchSettings(
            base_url=entry.base_url,
            api_key_env=entry.api_key_env,
            timeout_s=entry.timeout_s,
            max_retries=entry.max_retries,
            poll_s=entry.batch_poll_s,
            max_wait_s=entry.batch_max_wait_s,
            partition_key=partition_key,
        ),
        body=lambda request: request_body(entry, request),
        outcome=outcome_from_result,
        estimate_usd=lambda request: estimate_usd(entry, request),
        cost_usd=lambda out: entry.cost_usd(out.prompt_tokens, out.completion_tokens),
    )
