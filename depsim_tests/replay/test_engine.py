"""The replay engine: replies through the call engine, failures become outcomes, stable
seeds."""

import asyncio

import openai
import pytest

from depsim_assets.endpoints import async_client
from depsim_assets.models import CallEngine, Limits
from depsim_assets.replay.engine import ReplayRequest, replay_requests, sample_seed


def test_seeds_differ_per_conversation_and_sample_and_are_stable():
    seeds = {sample_seed(0, cid, k) for cid in ("a", "b", "c") for k in range(4)}
    assert len(seeds) == 12
    assert sample_seed(0, "a", 1) == sample_seed(0, "a", 1)
    assert sample_seed(1, "a", 1) != sample_seed(0, "a", 1)


PREFIX = [{"role": "user", "content": "Can you suggest a weekend itinerary for Lisbon?"}]


async def complete_one(client, request, *, model, params):
    """One request through the engine, made once (no retries)."""
    engine = CallEngine(Limits(max_concurrency=1, max_retries=0))
    (outcome,) = await replay_requests(client, [request], engine=engine, model=model,
                                       params=params)
    return outcome


def test_complete_one_through_the_simulator_over_http():
    async def go():
        async with async_client("sim", api_key_env=None, timeout_s=30) as client:
            req = ReplayRequest("conv-1", 0, PREFIX)
            first = await complete_one(client, req, model="sim-production", params={})
            again = await complete_one(client, req, model="sim-production", params={})
            other = await complete_one(
                client, ReplayRequest("conv-1", 1, PREFIX), model="sim-production", params={}
            )
            return first, again, other

    first, again, other = asyncio.run(go())
    assert first.status == "ok" and first.reply
    assert first.prompt_tokens > 0 and first.completion_tokens > 0
    assert again.reply == first.reply  # deterministic per (model, prefix, seed)
    assert other.status == "ok"


def test_unknown_model_and_dead_endpoint_are_error_outcomes():
    async def go():
        async with async_client("sim", api_key_env=None, timeout_s=30) as client:
            missing = await complete_one(
                client, ReplayRequest("c", 0, PREFIX), model="no-such-model", params={}
            )
        dead = openai.AsyncOpenAI(
            base_url="http://127.0.0.1:9/v1", api_key="x", max_retries=0, timeout=2
        )
        async with dead:
            down = await complete_one(dead, ReplayRequest("c", 0, PREFIX), model="m", params={})
        return missing, down

    missing, down = asyncio.run(go())
    assert missing.status == "error" and missing.error.startswith("NotFoundError")
    assert down.status == "error" and down.error.startswith("APIConnectionError")


def test_missing_key_env_is_a_clear_error(monkeypatch):
    from depsim_assets.endpoints import EndpointError

    monkeypatch.delenv("DEPSIM_TEST_MISSING_KEY", raising=False)
    with pytest.raises(EndpointError, match="DEPSIM_TEST_MISSING_KEY.*not set"):
        async_client("http://127.0.0.1:9/v1", api_key_env="DEPSIM_TEST_MISSING_KEY", timeout_s=1)


def test_prompts_longer_than_the_context_are_rows_with_a_reason_not_a_failed_run():
    """A known window: a prompt surely too long makes no request; one the count missed gets
    the server's own context error, once, with the same reason."""
    import httpx

    from depsim_assets.endpoints import resolve_base_url
    from depsim_assets.models import TokenCounter
    from depsim_assets.replay.engine import request_params

    base = resolve_base_url("sim")
    model = "sim-production@ctx60"
    short = ReplayRequest("short", 0, PREFIX)
    long = ReplayRequest("long", 0, [{"role": "user", "content": "word " * 400}])
    # 40 words: under the window by the client's count with no tokenizer, over the server's
    edge = ReplayRequest("edge", 0, [{"role": "user", "content": "a b c d e f g h i j " * 7}])
    params = request_params({}, 16)
    assert params == {"max_tokens": 16}
    assert request_params({"max_tokens": 5}, 16) == {"max_tokens": 5}

    async def go(counter):
        engine = CallEngine(Limits(max_concurrency=2, max_retries=3, backoff_s=0.01))
        async with async_client("sim", api_key_env=None, timeout_s=30) as client:
            return await replay_requests(client, [short, long, edge], engine=engine,
                                         model=model, params=params, context_window=60,
                                         counter=counter), engine

    before = httpx.get(f"{base}/sim/stats").json()["by_model"].get(model, 0)
    (ok, too_long, edge_out), engine = asyncio.run(go(TokenCounter(None)))
    sent = httpx.get(f"{base}/sim/stats").json()["by_model"].get(model, 0) - before
    assert ok.status == "ok" and ok.reply
    assert too_long.status == "error" and too_long.attempts == 0
    assert too_long.error.startswith("context_length_exceeded: the prompt has")
    assert "no request made" in too_long.error
    assert edge_out.status == "error" and edge_out.attempts == 1
    assert edge_out.error.startswith("context_length_exceeded: BadRequestError")
    assert sent == 2  # the short prompt and the edge one, each once
    # with the server's tokenizer the edge prompt is known to be too long: no request
    (_, _, edge_counted), _ = asyncio.run(go(TokenCounter(base)))
    assert edge_counted.attempts == 0 and "server's tokenizer" in edge_counted.error
