"""answer_all, the one path of cached model calls: cache hits are not asked again, answers
are stored as they arrive and kept when the run breaks off, failures are asked again."""

import asyncio
import dataclasses

import duckdb
import pytest

from depsim_assets.endpoints import async_client
from depsim_assets.models import (
    BUDGET_REACHED,
    Budget,
    CallEngine,
    Limits,
    answer_all,
    request_key,
)
from depsim_assets.replay.engine import (
    REPLY_CODEC,
    ReplayOutcome,
    ReplayRequest,
    not_attempted,
    reply_worker,
)
from depsim_assets.resources import Warehouse

MODEL = "sim-production"
REQUESTS = [
    ReplayRequest(f"conv-{i}", 0, [{"role": "user", "content": f"Plan a trip, day {i}."}])
    for i in range(6)
]


def key(request: ReplayRequest) -> str:
    return request_key(endpoint="sim", model=MODEL, params={}, messages=request.messages,
                       sample_index=request.sample_index)


def answer(warehouse, requests, *, engine=None, call=None):
    """answer_all over the in-process simulator (real HTTP) with replay's worker."""

    async def go():
        eng = engine or CallEngine(Limits(max_concurrency=4, max_retries=0))
        async with async_client("sim", api_key_env=None, timeout_s=30) as client:
            worker = call or reply_worker(client, engine=eng, model=MODEL, params={},
                                          cost=lambda out: 1.0)
            return await answer_all(
                warehouse, requests, kind="replay", endpoint="sim", model=MODEL, key=key,
                call=worker, skipped=not_attempted, codec=REPLY_CODEC, engine=eng)

    return asyncio.run(go())


def stored(warehouse) -> dict[str, str]:
    with duckdb.connect(warehouse.database, read_only=True) as conn:
        return dict(conn.execute("SELECT request_key, status FROM model_calls").fetchall())


@pytest.fixture
def warehouse(tmp_path):
    return Warehouse(database=str(tmp_path / "warehouse.duckdb"))


def test_only_keys_never_answered_are_sent_and_outcomes_keep_input_order(warehouse):
    first = answer(warehouse, REQUESTS[:4])
    assert first.cached == 0 and first.sent == 4
    assert all(out.status == "ok" for out in first.outcomes)
    assert set(stored(warehouse)) == {key(r) for r in REQUESTS[:4]}

    sent: list[str] = []

    def counting(inner):
        async def call(request):
            sent.append(request.conversation_id)
            return await inner(request)
        return call

    async def go():
        engine = CallEngine(Limits(max_concurrency=4, max_retries=0))
        async with async_client("sim", api_key_env=None, timeout_s=30) as client:
            return await answer_all(
                warehouse, REQUESTS, kind="replay", endpoint="sim", model=MODEL, key=key,
                call=counting(reply_worker(client, engine=engine, model=MODEL, params={})),
                skipped=not_attempted, codec=REPLY_CODEC, engine=engine)

    again = asyncio.run(go())
    assert sorted(sent) == ["conv-4", "conv-5"]  # the 4 answered ones are cache hits
    assert again.cached == 4 and again.sent == 2
    assert again.outcomes[:4] == first.outcomes  # read back exactly as they were stored
    assert all(o.status == "ok" and o.reply for o in again.outcomes)


def test_answers_that_came_back_are_kept_when_the_run_breaks_off(warehouse):
    done = 0

    async def flaky(request):
        nonlocal done
        if request.conversation_id == "conv-3":
            await asyncio.sleep(0.2)  # the others come back first
            raise RuntimeError("the run was interrupted")
        done += 1
        return ReplayOutcome(status="ok", reply=f"reply to {request.conversation_id}")

    engine = CallEngine(Limits(max_concurrency=8, max_retries=0))
    with pytest.raises(RuntimeError, match="interrupted"):
        answer(warehouse, REQUESTS, engine=engine, call=flaky)
    kept = stored(warehouse)
    assert done == 5 and len(kept) == 5 and key(REQUESTS[3]) not in kept


def test_failures_are_stored_but_asked_again_and_unsent_ones_are_not_stored(warehouse):
    calls: list[str] = []

    async def half(request):
        calls.append(request.conversation_id)
        index = int(request.conversation_id.split("-")[1])
        if index % 2:
            return ReplayOutcome(status="error", error="InternalServerError: boom")
        return ReplayOutcome(status="ok", reply="fine")

    first = answer(warehouse, REQUESTS, call=half)
    assert stored(warehouse) == {key(r): ("error" if i % 2 else "ok")
                                 for i, r in enumerate(REQUESTS)}
    calls.clear()
    again = answer(warehouse, REQUESTS, call=half)
    assert sorted(calls) == ["conv-1", "conv-3", "conv-5"] and again.cached == 3
    assert [o.status for o in again.outcomes] == [o.status for o in first.outcomes]

    # A codec may leave an outcome out of the cache (no request was made for it).
    quiet = dataclasses.replace(REPLY_CODEC, status=lambda out: None)

    async def go():
        engine = CallEngine(Limits(max_concurrency=2, max_retries=0))
        extra = [ReplayRequest("conv-9", 0, [{"role": "user", "content": "not sent"}])]
        return await answer_all(
            warehouse, extra, kind="replay", endpoint="sim", model=MODEL, key=key, call=half,
            skipped=not_attempted, codec=quiet, engine=engine)

    asyncio.run(go())
    assert key(ReplayRequest("conv-9", 0, [{"role": "user", "content": "not sent"}])) \
        not in stored(warehouse)


def test_a_spent_budget_leaves_every_pending_request_not_attempted_online(warehouse):
    engine = CallEngine(Limits(max_concurrency=2, max_retries=0), budget=Budget(max_usd=0.0))
    answers = answer(warehouse, REQUESTS, engine=engine)
    assert answers.not_attempted == 6 and answers.sent == 0
    assert all(o.status == "not_attempted" and o.error == BUDGET_REACHED
               for o in answers.outcomes)
    assert stored(warehouse) == {}  # nothing was asked, nothing to keep
