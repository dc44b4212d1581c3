"""What a failed model call was: the class of error, whether to retry it, how long to wait.

Servers disagree on how they say the same thing (a prompt too long for the context, a request
field they do not take), so the texts they send are matched here, in one place, for the
engine, the judge and the batch path alike.
"""

from __future__ import annotations

import email.utils
import time

import openai

# Reason prefix of a request that cannot fit the model's context window (kept on rows).
CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"

# What servers say when a prompt does not fit: OpenAI/vLLM ("maximum context length"),
# llama.cpp's llama-server ("exceed_context_size_error", "exceeds the available context
# size"), llama-cpp-python ("Requested tokens (N) exceed context window of M"), Ollama and
# gateways ("too long", "context length").
_CONTEXT_MARKERS = (
    "maximum context length", "context length", "context_length", "context window",
    "context size", "exceed_context", "too long", "too many tokens",
)
# What a server says when it rejects a request field it does not support.
_FIELD_REFUSAL_MARKERS = (
    "response_format", "json_schema", "input should be", "unsupported", "not supported",
    "extra inputs are not permitted", "unrecognized request argument",
)


def error_text(exc: BaseException) -> str:
    """Everything a failed call said, lower-cased: its message and its response body."""
    parts = [str(exc)]
    body = getattr(exc, "body", None)
    if body is not None:
        parts.append(str(body))
    return " ".join(parts).lower()


def is_context_length_error(exc: BaseException) -> bool:
    """A 4xx (or a 5xx that says so) because the prompt is longer than the context."""
    if not isinstance(exc, openai.APIStatusError) or exc.status_code == 429:
        return False
    text = error_text(exc)
    if exc.status_code >= 500 and "exceed" not in text:
        return False
    return any(marker in text for marker in _CONTEXT_MARKERS) or (
        "exceed" in text and ("context" in text or "token" in text)
    )


def is_field_refusal(exc: BaseException) -> bool:
    """A refusal of a request field (any status): the server will say the same every time."""
    if not isinstance(exc, openai.APIStatusError) or exc.status_code in (408, 409, 429):
        return False
    text = error_text(exc)
    return any(marker in text for marker in _FIELD_REFUSAL_MARKERS)


def classify(exc: BaseException) -> tuple[str, bool]:
    """(attempt outcome, retryable) of a failed attempt."""
    if is_context_length_error(exc):
        return CONTEXT_LENGTH_EXCEEDED, False
    if is_field_refusal(exc):
        return "refused_field", False
    if isinstance(exc, openai.RateLimitError):
        return "rate_limited", True
    if isinstance(exc, openai.APITimeoutError | TimeoutError):
        return "timeout", True
    if isinstance(exc, openai.APIConnectionError | ConnectionError):
        return "connection_error", True
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code >= 500 or exc.status_code in (408, 409):
            return "server_error", True
        return "client_error", False
    return "failed", False


def retry_after_s(exc: BaseException) -> float | None:
    """The wait a 429/503 asks for (``retry-after-ms``, ``Retry-After`` seconds or date)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


