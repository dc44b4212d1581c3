"""The call engine: adaptive concurrency, Retry-After, retries by error class, rate limits,
budget, and one final status per request with every attempt counted."""

import asyncio
import time

import httpx2
import openai

from depsim_assets.models import (
    ERROR,
    NOT_ATTEMPTED,
    OK,
    AdaptiveLimit,
    Budget,
    CallEngine,
    Limits,
    classify,
    retry_after_s,
)

REQUEST = httpx2.Request("POST", "http://127.0.0.1:9/v1/chat/completions")


def status_error(
    code: int, headers: dict | None = None, message: str | None = None, body=None
) -> openai.APIStatusError:
    response = httpx2.Response(code, headers=headers or {}, request=REQUEST)
    kind = {429: openai.RateLimitError, 400: openai.BadRequestError,
            500: openai.InternalServerError}.get(code, openai.APIStatusError)
    return kind(message or f"HTTP {code}", response=response, body=body)


# What real servers answer (bodies as sent by llama-cpp-python 0.3, llama-server, OpenAI).
LLAMA_CPP_PYTHON_500 = (
    "Error code: 500 - 1 validation error:\n  {'type': 'literal_error', 'loc': ('body', "
    "'response_format', 'type'), 'msg': \"Input should be 'text' or 'json_object'\"}"
)
LLAMA_SERVER_CONTEXT = {"code": 400, "type": "exceed_context_size_error",
                        "message": "the request exceeds the available context size, try "
                                   "increasing it", "n_prompt_tokens": 9000, "n_ctx": 8192}
OPENAI_CONTEXT = ("This model's maximum context length is 8192 tokens. However, your "
                  "messages resulted in 9000 tokens.")


def test_refusals_and_context_errors_are_final_whatever_their_status():
    assert classify(status_error(500, message=LLAMA_CPP_PYTHON_500)) == ("refused_field", False)
    assert classify(status_error(400, message="response_format is not supported")) == (
        "refused_field", False)
    ctx = status_error(400, message="Error code: 400", body=LLAMA_SERVER_CONTEXT)
    assert classify(ctx) == ("context_length_exceeded", False)
    assert classify(status_error(400, message=OPENAI_CONTEXT)) == (
        "context_length_exceeded", False)
    # a plain 500 or a 429 is still transient
    assert classify(status_error(500)) == ("server_error", True)
    assert classify(status_error(429, message="too many tokens per minute")) == (
        "rate_limited", True)


def test_a_refused_field_or_a_long_prompt_costs_one_request_each():
    async def attempt(i, n):
        if i % 2:
            raise status_error(500, message=LLAMA_CPP_PYTHON_500)
        raise status_error(400, message="Error code: 400", body=LLAMA_SERVER_CONTEXT)

    engine = CallEngine(fast(max_concurrency=4, max_retries=4))
    results, tries = run(engine, 6, attempt)
    assert sum(tries.values()) == 6  # no retry storm
    assert engine.attempts == {"refused_field": 3, "context_length_exceeded": 3}
    assert [r.kind for r in results] == ["context_length_exceeded", "refused_field"] * 3
    assert results[0].error.startswith("context_length_exceeded: BadRequestError")
    assert "Input should be 'text' or 'json_object'" in results[1].error


def fast(**kw) -> Limits:
    return Limits(backoff_s=0.01, backoff_max_s=0.05, **kw)


def run(engine: CallEngine, n: int, attempt_for):
    """``attempt_for(i, try_no)`` is awaited for each attempt of item i."""
    tries: dict[int, int] = {}

    async def work(i):
        async def attempt():
            tries[i] = tries.get(i, 0) + 1
            return await attempt_for(i, tries[i])

        return await engine.call(attempt, cost=lambda v: 1.0)

    async def main():
        return await engine.map(range(n), work, skipped=lambda i: None,
                                status=lambda r: NOT_ATTEMPTED if r is None else r.status)

    results = asyncio.run(main())
    return [None if r is None or r.status == NOT_ATTEMPTED else r for r in results], tries


def test_in_flight_never_exceeds_the_cap_and_order_is_kept():
    state = {"now": 0, "peak": 0}

    async def attempt(i, _):
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        await asyncio.sleep(0.002 * (i % 3))
        state["now"] -= 1
        return i * 2

    engine = CallEngine(fast(max_concurrency=4))
    results, _ = run(engine, 60, attempt)
    assert [r.value for r in results] == [i * 2 for i in range(60)]
    assert {r.status for r in results} == {OK}
    assert state["peak"] == 4
    assert engine.attempts == {OK: 60} and engine.final == {OK: 60}


def test_errors_are_retried_by_class_and_every_attempt_is_counted():
    async def attempt(i, n):
        if i == 0:
            raise status_error(400)  # not retried
        if i == 1:
            raise status_error(500)  # retried until retries run out
        if i == 2 and n < 3:
            raise openai.APIConnectionError(request=REQUEST)  # a dropped connection
        if i == 3 and n < 2:
            raise openai.APITimeoutError(request=REQUEST)
        return "fine"

    engine = CallEngine(fast(max_concurrency=8, max_retries=3))
    results, tries = run(engine, 5, attempt)
    assert [r.status for r in results] == [ERROR, ERROR, OK, OK, OK]
    assert results[0].error.startswith("BadRequestError") and tries[0] == 1
    assert results[1].error.startswith("InternalServerError") and tries[1] == 4
    assert [r.attempts for r in results] == [1, 4, 3, 2, 1]
    assert engine.attempts == {"client_error": 1, "server_error": 4, "connection_error": 2,
                               "timeout": 1, OK: 3}
    assert sum(engine.attempts.values()) == sum(tries.values())


def test_retry_after_is_honoured_and_429_halves_the_limit():
    sent: dict[int, list[float]] = {}

    async def attempt(i, n):
        sent.setdefault(i, []).append(time.monotonic())
        if n == 1:
            raise status_error(429, {"retry-after": "0.3"})
        return i

    engine = CallEngine(fast(max_concurrency=16))
    results, _ = run(engine, 8, attempt)
    assert all(r.status == OK and r.attempts == 2 for r in results)
    assert all(times[1] - times[0] >= 0.3 for times in sent.values())
    assert engine.attempts["rate_limited"] == 8
    # the 8 429s came back within one window: the limit is cut once, not eight times
    assert engine.limit.decreases == 1
    assert engine.limit.value < 16


def test_retry_after_forms():
    assert retry_after_s(status_error(429, {"retry-after-ms": "250"})) == 0.25
    assert retry_after_s(status_error(429, {"retry-after": "2"})) == 2.0
    assert retry_after_s(status_error(429)) is None
    assert classify(status_error(429)) == ("rate_limited", True)
    assert classify(status_error(404)) == ("client_error", False)


def test_adaptive_limit_decreases_multiplicatively_and_grows_additively():
    async def main():
        clock = {"t": 0.0}
        limit = AdaptiveLimit(32, clock=lambda: clock["t"])
        for _ in range(3):  # three 429s, each in a new window
            await limit.acquire()
            clock["t"] += 2
            await limit.release(success=False, throttled=True, window_s=1)
        assert limit.value == 4 and limit.decreases == 3
        for _ in range(4):  # a window of successes at limit 4 adds one
            await limit.acquire()
            await limit.release(success=True, throttled=False, window_s=1)
        assert 4.9 < limit.value < 5.1
        for _ in range(10_000):
            await limit.acquire()
            await limit.release(success=True, throttled=False, window_s=1)
        assert limit.value == 32  # never above the cap

    asyncio.run(main())


def test_budget_stops_new_requests_cleanly():
    async def attempt(i, _):
        await asyncio.sleep(0.001)
        return i

    engine = CallEngine(fast(max_concurrency=1), budget=Budget(max_usd=10))
    results, tries = run(engine, 40, attempt)
    ok = [r for r in results if r is not None]
    # each ok call costs 1; one at a time, so none is in flight when it is reached
    assert len(ok) == 10
    assert results.count(None) == 40 - len(ok)
    assert engine.final[NOT_ATTEMPTED] == 40 - len(ok)
    assert sum(tries.values()) == len(ok)


def test_requests_per_minute_are_spread_out():
    async def attempt(i, _):
        return i

    engine = CallEngine(fast(max_concurrency=64, rpm=1200))  # 20 a second
    started = time.monotonic()
    results, _ = run(engine, 50, attempt)
    took = time.monotonic() - started
    assert all(r.status == OK for r in results)
    assert took >= (50 - 20) / 20 * 0.9  # one second's burst, then 20/s


def test_tokens_per_minute_limit_the_rate_by_size():
    async def main():
        engine = CallEngine(fast(max_concurrency=64, tpm=60_000))  # 1,000 tokens a second

        async def work(i):
            return await engine.call(lambda: asyncio.sleep(0, result=i), tokens=500,
                                     usage=lambda _: 500)

        started = time.monotonic()
        await engine.map(range(6), work, skipped=lambda i: None, status=lambda r: r.status)
        return time.monotonic() - started

    assert asyncio.run(main()) >= 1.8  # 3,000 tokens: one second's burst, then 2 s


def test_budget_overshoot_is_at_most_the_calls_in_flight():
    async def attempt(i, _):
        await asyncio.sleep(0.001)
        return i

    engine = CallEngine(fast(max_concurrency=4), budget=Budget(max_usd=10))
    results, tries = run(engine, 60, attempt)
    ok = [r for r in results if r is not None]
    assert 10 <= len(ok) <= 10 + 4 - 1
    assert engine.final[OK] + engine.final[NOT_ATTEMPTED] == 60
