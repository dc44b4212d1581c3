"""The one engine every model call goes through: as fast as the endpoint allows, never lost.

One :class:`CallEngine` per endpoint and run. It runs a pool of asyncio workers over the
requests and, for each request, makes attempts until one succeeds or it gives up:

- **Concurrency** is adaptive (AIMD): the in-flight limit starts at the configured cap, is
  halved on a 429 (at most once per window, so one burst of 429s counts once) and grows by
  one per window of successes, never above the cap nor below one.
- **Rate limits**: optional requests-per-minute (``aiolimiter``) and tokens-per-minute
  buckets; tokens are estimated before the call and corrected from the reported usage after
  it (aiolimiter cannot give back an over-estimate, hence :class:`RateBucket`).
- **Retries** (``tenacity``): 429, 5xx, timeouts and dropped connections are retried up to
  ``max_retries`` times with jittered exponential backoff; a 429's ``Retry-After`` is a
  floor on the wait.
  Other 4xx are final at once, and so are two errors some servers send as 5xx: a refusal
  of a request field (llama-cpp-python answers an unsupported ``response_format`` with
  HTTP 500) and a prompt longer than the model's context. Retrying either only repeats the
  same answer (a retry storm: 396 requests for 80 replies, seen against a real server).
  The ``openai`` client's own retries are off (``max_retries=0`` on the client) so that
  every attempt is seen and counted here.
- **Budget**: an optional per-run spending limit; once reached no new request starts and the
  rest end as ``not_attempted`` (requests already in flight finish and are kept).

Every request ends with one :class:`CallResult` whose status is ``ok``, ``error`` (with
``Class: message``) or ``not_attempted``; every attempt's outcome is counted in
:attr:`CallEngine.attempts`.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import aiolimiter
import openai
import tenacity
from tqdm import tqdm

from depsim_assets.endpoints import describe_error
from depsim_assets.models.errors import CONTEXT_LENGTH_EXCEEDED, classify, retry_after_s

T = TypeVar("T")
R = TypeVar("R")

OK, ERROR, NOT_ATTEMPTED = "ok", "error", "not_attempted"
BUDGET_REACHED = "NotAttempted: the run's budget was reached"


@dataclass(frozen=True)
class Limits:
    """What one endpoint allows (from ``candidates.yaml`` or the judge's settings)."""

    max_concurrency: int = 16
    rpm: float | None = None
    tpm: float | None = None
    max_retries: int = 4
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0


@dataclass
class CallResult(Generic[R]):
    """The final outcome of one request."""

    status: str
    value: R | None = None
    error: str | None = None
    attempts: int = 0
    # Outcome class of the last failed attempt (see :func:`classify`), e.g. ``refused_field``.
    kind: str | None = None


class Budget:
    """A spending limit in USD shared by every call of a run (``None``: unlimited)."""

    def __init__(self, max_usd: float | None = None, spent_usd: float = 0.0):
        self.max_usd = max_usd
        self.spent_usd = spent_usd

    @property
    def exhausted(self) -> bool:
        return self.max_usd is not None and self.spent_usd >= self.max_usd

    def charge(self, usd: float) -> None:
        self.spent_usd += usd


class RateBucket:
    """A token bucket refilled at ``per_minute / 60`` per second, holding one second's worth
    (at least ``min_capacity``, so one large request can always pass)."""

    def __init__(self, per_minute: float, *, clock: Callable[[], float] = time.monotonic):
        self.rate = per_minute / 60.0
        self.capacity = max(self.rate, 1.0)
        self.level = self.capacity
        self.clock = clock
        self.updated = clock()
        self.lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self.clock()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    async def take(self, amount: float) -> None:
        """Wait until ``amount`` can be taken (requests are served in arrival order)."""
        amount = min(amount, self.capacity)
        async with self.lock:
            self._refill()
            while self.level < amount:
                await asyncio.sleep((amount - self.level) / self.rate)
                self._refill()
            self.level -= amount

    def adjust(self, delta: float) -> None:
        """Correct an estimate after the fact (positive: more was used than taken)."""
        self._refill()
        self.level -= delta


class AdaptiveLimit:
    """The in-flight limit: multiplicative decrease on 429, additive increase on success."""

    def __init__(self, cap: int, *, clock: Callable[[], float] = time.monotonic):
        self.cap = max(1, int(cap))
        self.value = float(self.cap)
        self.clock = clock
        self.in_flight = 0
        self.last_cut = -math.inf
        self.decreases = 0
        self._changed = asyncio.Condition()

    @property
    def allowed(self) -> int:
        return max(1, int(self.value))

    async def acquire(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_flight < self.allowed)
            self.in_flight += 1

    async def release(self, *, success: bool, throttled: bool, window_s: float) -> None:
        async with self._changed:
            self.in_flight -= 1
            if throttled:
                now = self.clock()
                # One cut per window: the other requests in flight at the time of the first
                # 429 were sent under the old limit and say nothing new.
                if now - self.last_cut >= window_s:
                    self.value = max(1.0, self.value / 2)
                    self.last_cut = now
                    self.decreases += 1
            elif success and self.value < self.cap:
                self.value = min(float(self.cap), self.value + 1.0 / self.value)
            self._changed.notify(max(1, self.allowed - self.in_flight))


# What a failed attempt raises that the engine classifies (see errors.classify); anything
# else is a bug in the caller's attempt and propagates.
_TRANSIENT = (TimeoutError, openai.OpenAIError, OSError)


class _NotStarted(Exception):
    """The budget was reached before a request's first attempt."""


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, _TRANSIENT) and classify(exc)[1]


def _request_limiter(per_minute: float) -> aiolimiter.AsyncLimiter:
    """A requests-per-minute limiter: ``per_minute / 60`` a second, bursting one second's
    worth (at least one request), like :class:`RateBucket`."""
    rate = per_minute / 60.0
    capacity = max(rate, 1.0)
    return aiolimiter.AsyncLimiter(capacity, capacity / rate)


Progress = Callable[["CallEngine", bool], None]


def progress_reporter(log: Any, label: str, every_s: float = 5.0) -> Progress:
    """A progress callback: a line in ``log`` (done, failed, rate, ETA) every ``every_s``
    seconds and at the end, plus a bar on stderr when ``DEPSIM_PROGRESS_BAR=1`` (the CLI sets
    it when run in a terminal)."""
    state: dict[str, Any] = {"last": time.monotonic(), "bar": None}
    want_bar = os.environ.get("DEPSIM_PROGRESS_BAR") == "1"

    def report(engine: CallEngine, final: bool) -> None:
        if want_bar:
            if state["bar"] is None:
                state["bar"] = tqdm(total=engine.total, desc=label, unit="req", leave=False)
            bar = state["bar"]
            bar.total = engine.total
            bar.update(engine.done - bar.n)
            if final:
                bar.close()
                state["bar"] = None
        now = time.monotonic()
        if final or now - state["last"] >= every_s:
            state["last"] = now
            log.info(f"{label}: {engine.summary()}")

    return report


class CallEngine:
    """Runs requests against one endpoint within its limits; see the module docstring."""

    def __init__(
        self,
        limits: Limits,
        *,
        budget: Budget | None = None,
        progress: Progress | None = None,
        rng: random.Random | None = None,
    ):
        self.limits = limits
        self.budget = budget or Budget()
        self.progress = progress
        self.rng = rng or random.Random()
        self.attempts: Counter[str] = Counter()
        self.final: Counter[str] = Counter()
        self.total = 0
        self.started = time.monotonic()
        self._window_s = 1.0
        self.limit: AdaptiveLimit | None = None
        self._rpm: aiolimiter.AsyncLimiter | None = None
        self._tpm: RateBucket | None = None

    @property
    def done(self) -> int:
        return sum(self.final.values())

    def rate_per_s(self) -> float:
        return self.done / max(time.monotonic() - self.started, 1e-9)

    def eta_s(self) -> float | None:
        rate = self.rate_per_s()
        return (self.total - self.done) / rate if rate > 0 else None

    def summary(self) -> str:
        """``done/total, failed, rate, ETA`` in one line (for logs)."""
        eta = self.eta_s()
        failed = self.done - self.final[OK] - self.final["scored"] - self.final[NOT_ATTEMPTED]
        return (
            f"{self.done}/{self.total} done, {failed} failed, "
            f"{self.final[NOT_ATTEMPTED]} not attempted, {self.rate_per_s():.1f}/s, "
            f"ETA {'-' if eta is None else f'{eta:.0f}s'}, "
            f"in-flight limit {self.limit.allowed if self.limit else '-'}"
        )

    def _report(self, final: bool = False) -> None:
        if self.progress is not None:
            self.progress(self, final)

    def _backoff(self, retry: int, floor: float | None) -> float:
        ceiling = min(self.limits.backoff_max_s, self.limits.backoff_s * 2 ** (retry - 1))
        wait = self.rng.uniform(ceiling / 2, ceiling)  # jitter keeps retries from syncing up
        return max(wait, floor or 0.0)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        """tenacity's wait: jittered exponential backoff, a 429/503's Retry-After its floor."""
        exc = state.outcome.exception() if state.outcome is not None else None
        floor = None
        if exc is not None and classify(exc)[0] in ("rate_limited", "server_error"):
            floor = retry_after_s(exc)
        return self._backoff(state.attempt_number, floor)

    def _ensure_started(self) -> AdaptiveLimit:
        # Built lazily: asyncio primitives belong to the loop that first uses them.
        if self.limit is None:
            self.limit = AdaptiveLimit(self.limits.max_concurrency)
            self._rpm = _request_limiter(self.limits.rpm) if self.limits.rpm else None
            self._tpm = RateBucket(self.limits.tpm) if self.limits.tpm else None
        return self.limit

    async def _attempt(
        self, attempt: Callable[[], Awaitable[R]], *, tokens: float, first: bool
    ) -> R:
        """One attempt within the endpoint's limits; raises what it raised, counted."""
        limit = self._ensure_started()
        if self._rpm is not None:
            await self._rpm.acquire(1)
        if self._tpm is not None:
            await self._tpm.take(tokens)
        await limit.acquire()
        if first and self.budget.exhausted:
            # Reached while this request waited for a slot: it is not started at all.
            await limit.release(success=False, throttled=False, window_s=self._window_s)
            raise _NotStarted
        sent = time.monotonic()
        try:
            value = await attempt()
        except _TRANSIENT as exc:
            kind = classify(exc)[0]
            self.attempts[kind] += 1
            await limit.release(
                success=False, throttled=kind == "rate_limited", window_s=self._window_s
            )
            raise
        # A window is about one round trip (mean latency of recent attempts), and at
        # least a second: endpoints count their limits per second or minute.
        took = time.monotonic() - sent
        self._window_s = max(1.0, 0.9 * self._window_s + 0.1 * took)
        self.attempts[OK] += 1
        await limit.release(success=True, throttled=False, window_s=self._window_s)
        return value

    async def call(
        self,
        attempt: Callable[[], Awaitable[R]],
        *,
        tokens: float = 0.0,
        usage: Callable[[R], float] | None = None,
        cost: Callable[[R], float] | None = None,
    ) -> CallResult[R]:
        """Make one request: attempts until success, a final error, or retries run out.

        ``attempt()`` makes one call and raises on failure (``openai`` errors, OSError);
        ``tokens`` estimates its size for the tokens-per-minute bucket and ``usage(result)``
        reports what it really used; ``cost(result)`` is charged to the budget.
        """
        # One per call: a tenacity controller keeps the state of the attempts it runs.
        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(self.limits.max_retries + 1),
            retry=tenacity.retry_if_exception(_retryable),
            wait=self._wait,
            reraise=True,
        )
        tried = 0
        answered: list[R] = []
        try:
            async for trial in retrying:
                with trial:
                    tried = trial.retry_state.attempt_number
                    answered.append(
                        await self._attempt(attempt, tokens=tokens, first=tried == 1))
        except _NotStarted:
            return CallResult(NOT_ATTEMPTED, error=BUDGET_REACHED)
        except _TRANSIENT as exc:  # final: not retryable, or retries ran out
            kind = classify(exc)[0]
            error = describe_error(exc)
            if kind == CONTEXT_LENGTH_EXCEEDED:
                error = f"{CONTEXT_LENGTH_EXCEEDED}: {error}"
            return CallResult(ERROR, error=error, attempts=tried, kind=kind)
        value = answered[-1]
        if self._tpm is not None and usage is not None:
            self._tpm.adjust(usage(value) - tokens)
        if cost is not None:
            self.budget.charge(cost(value))
        return CallResult(OK, value=value, attempts=tried)

    async def map(
        self,
        items: Sequence[T],
        work: Callable[[T], Awaitable[R]],
        *,
        skipped: Callable[[T], R],
        status: Callable[[R], str],
    ) -> list[R]:
        """``work(item)`` for every item (it makes its calls through :meth:`call`), in input
        order. Once the budget is reached, items not yet started become ``skipped(item)``.
        ``status(result)`` names each final outcome for the counts and progress lines."""
        self._ensure_started()
        self.total += len(items)
        results: list[R | None] = [None] * len(items)
        queue = iter(range(len(items)))

        async def worker() -> None:
            for index in queue:
                if self.budget.exhausted:
                    result = skipped(items[index])
                else:
                    result = await work(items[index])
                results[index] = result
                self.final[status(result)] += 1
                self._report()

        # More workers than the cap: a request waiting out its backoff holds no slot, and
        # another one takes it meanwhile; the adaptive limit keeps in-flight under the cap.
        workers = min(len(items), 2 * self.limits.max_concurrency)
        await asyncio.gather(*(worker() for _ in range(workers)))
        self._report(final=True)
        return results  # type: ignore[return-value]
