"""The replay engine: replies through the call engine, failures become outcomes, stable
seeds."""

import asyncio

import openai
import pytest

from depsim_assets.calls import CallEngine, Limits
from depsim_assets.endpoints import async_client
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
