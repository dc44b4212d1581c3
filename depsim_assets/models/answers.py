"""Answers for many requests: the one code path of every cached model call.

:func:`answer_all` looks every request's key up in the response cache, sends only the
pending ones (online through the :class:`~depsim_assets.models.engine.CallEngine`, or
through the Batch API), writes each answer to the cache as it arrives, and flushes what came
back even when the run is interrupted. Replay asks it for replies and the judge for verdicts;
what a request and an answer are stays theirs (a :class:`Codec` says how an answer is stored).

The run's budget covers both paths. Online, the engine starts no request once it is reached.
Through the Batch API the cost is not known until the batch is collected, so each pending
request's cost is estimated before anything is submitted, the batch takes requests in order
while the spend so far plus their estimates stays within the budget, and the rest end as
``not_attempted`` outcomes (never dropped); what the collected answers really cost is then
charged to the budget.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from dagster_duckdb import DuckDBResource

from depsim_assets.models.batch import BatchResult, BatchSettings, run_batches
from depsim_assets.models.cache import CacheWriter, lookup
from depsim_assets.models.engine import NOT_ATTEMPTED, OK, Budget, CallEngine

Q = TypeVar("Q")
O = TypeVar("O")  # noqa: E741


@dataclass(frozen=True)
class Codec(Generic[O]):
    """How one kind of answer is stored in ``model_calls`` and read back."""

    to_payload: Callable[[O], dict[str, Any]]
    from_payload: Callable[[dict[str, Any]], O]
    # The row's status: ``ok`` (reused by later runs), ``error`` or ``not_attempted`` (kept
    # for the record and asked again), or None (not stored: no request was made).
    status: Callable[[O], str | None]
    # (prompt tokens, completion tokens) of an answer.
    tokens: Callable[[O], tuple[int, int]]


@dataclass(frozen=True)
class BatchCalls(Generic[Q, O]):
    """The Batch API instead of online calls: how to send a request and read its result."""

    settings: BatchSettings
    body: Callable[[Q], dict[str, Any]]
    outcome: Callable[[BatchResult], O]
    # Cost of a request before it is sent (an upper estimate) and of an answer after.
    estimate_usd: Callable[[Q], float]
    cost_usd: Callable[[O], float]


@dataclass
class Answers(Generic[O]):
    """One outcome per request, in input order, and where they came from."""

    outcomes: list[O]
    cached: int  # answered from the response cache
    pending: int  # not in the cache: sent, or not attempted
    not_attempted: int  # stopped by the run's budget

    @property
    def sent(self) -> int:
        """Requests answered by the endpoint in this run (calls made)."""
        return self.pending - self.not_attempted


def admit(
    requests: Sequence[Q], *, budget: Budget, estimate_usd: Callable[[Q], float]
) -> list[bool]:
    """Which requests a batch may take: in order, while the spend so far plus the estimates
    of those taken stays within the budget (all of them when there is no budget)."""
    if budget.max_usd is None:
        return [True] * len(requests)
    taken, reserved = [], 0.0
    for request in requests:
        cost = max(0.0, float(estimate_usd(request)))
        ok = not budget.exhausted and budget.spent_usd + reserved + cost <= budget.max_usd
        if ok:
            reserved += cost
        taken.append(ok)
    return taken


async def answer_all(
    warehouse: DuckDBResource,
    requests: Sequence[Q],
    *,
    kind: str,
    endpoint: str,
    model: str,
    key: Callable[[Q], str],
    call: Callable[[Q], Awaitable[O]],
    skipped: Callable[[Q], O],
    codec: Codec[O],
    engine: CallEngine,
    batch: BatchCalls[Q, O] | None = None,
    on_lookup: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> Answers[O]:
    """An outcome for every request: from the cache, else from the endpoint.

    ``key(request)`` is its cache key (:func:`~depsim_assets.models.cache.request_key`);
    ``call(request)`` makes its call(s) through ``engine`` and returns the outcome;
    ``skipped(request)`` is the outcome of a request the budget stopped. With ``batch``, the
    pending requests go through the Batch API instead of ``call``. ``on_lookup(cached,
    pending)`` is told the counts once the cache was read. Answers are written to
    ``model_calls`` (``kind``, ``endpoint``, ``model`` on each row) as they arrive and
    flushed before this returns or raises.
    """
    keys = [key(request) for request in requests]
    with warehouse.get_connection() as conn:
        cached = lookup(conn, keys)
    # The connection is released here: the calls below may take minutes.
    todo = [i for i, k in enumerate(keys) if k not in cached]
    if on_lookup is not None:
        on_lookup(len(requests) - len(todo), len(todo))
    writer = CacheWriter(warehouse)

    def keep(request_key: str, outcome: O) -> None:
        status = codec.status(outcome)
        if status is None:
            return
        prompt_tokens, completion_tokens = codec.tokens(outcome)
        writer.add({"request_key": request_key, "kind": kind, "endpoint": endpoint,
                    "model": model, "status": status, "payload": codec.to_payload(outcome),
                    "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens})

    fresh: dict[int, O] = {}
    not_attempted = 0
    try:
        if batch is not None and todo:
            taken = admit([requests[i] for i in todo], budget=engine.budget,
                          estimate_usd=batch.estimate_usd)
            for i, ok in zip(todo, taken, strict=True):
                if not ok:
                    fresh[i] = skipped(requests[i])
                    not_attempted += 1
            sent = [i for i, ok in zip(todo, taken, strict=True) if ok]
            if not_attempted:
                log(f"the run's budget admits {len(sent)} of {len(todo)} requests to a batch "
                    f"(estimated cost); {not_attempted} not attempted")
            by_key: dict[str, O] = {}

            def collected(batch_id: str, results: dict[str, BatchResult]) -> None:
                outcomes = {k: batch.outcome(result) for k, result in results.items()}
                for k, outcome in outcomes.items():
                    keep(k, outcome)
                    engine.budget.charge(batch.cost_usd(outcome))
                writer.flush()
                n_ok = sum(codec.status(o) == OK for o in outcomes.values())
                log(f"batch {batch_id}: collected {n_ok} ok, {len(outcomes) - n_ok} errors")
                by_key.update(outcomes)

            await run_batches(
                warehouse, [(keys[i], batch.body(requests[i])) for i in sent],
                settings=batch.settings, endpoint=endpoint, model=model,
                on_collected=collected, log=log)
            fresh.update({i: by_key[keys[i]] for i in sent})
        elif todo:
            stopped = 0

            async def work(index: int) -> O:
                nonlocal stopped
                outcome = await call(requests[index])
                keep(keys[index], outcome)
                stopped += codec.status(outcome) == NOT_ATTEMPTED
                return outcome

            def skip(index: int) -> O:
                nonlocal stopped
                stopped += 1  # the budget was reached before it started: nothing to store
                return skipped(requests[index])

            results = await engine.map(
                todo, work, skipped=skip, status=lambda o: codec.status(o) or "error")
            fresh = dict(zip(todo, results, strict=True))
            # Stopped by the engine, or by the budget while the request waited for a slot.
            not_attempted = stopped
    finally:
        writer.flush()  # what did come back is kept even if the run is interrupted
    outcomes = [
        fresh[i] if i in fresh else codec.from_payload(cached[keys[i]])
        for i in range(len(requests))
    ]
    return Answers(outcomes, cached=len(requests) - len(todo), pending=len(todo),
                   not_attempted=not_attempted)
