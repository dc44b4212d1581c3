"""tenacity and aiolimiter against depsim's own retry loop and rate buckets (docs/models.md).

    .venv/bin/python benchmarks/models_libraries.py [--calls 20000] [--json]

Three measurements, in one process, no network:

1. Client CPU per successful call of ``CallEngine.call`` (the engine's hot path, taken by
   every request) with its retry loop on ``tenacity.AsyncRetrying`` as shipped, and with
   the hand-written loop it replaced (same stop, retry predicate and wait).
2. Requests-per-minute bucket: achieved rate of depsim's ``RateBucket`` and of
   ``aiolimiter.AsyncLimiter`` sized to the same one-second burst, 64 callers, 1,200 rpm.
3. Tokens-per-minute bucket when the estimate taken before a call is larger than what the
   call then uses (a reply capped at max_tokens usually stops well short): depsim's bucket
   gives the difference back after the call; ``AsyncLimiter`` has no way to, so its rate is
   bound by the estimate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiolimiter
import openai

from depsim_assets.endpoints import describe_error
from depsim_assets.models import (
    BUDGET_REACHED,
    CONTEXT_LENGTH_EXCEEDED,
    ERROR,
    NOT_ATTEMPTED,
    OK,
    CallEngine,
    CallResult,
    Limits,
    RateBucket,
    classify,
    retry_after_s,
)

R = TypeVar("R")


class OwnLoopEngine(CallEngine):
    """The engine with its retry loop as depsim wrote it before tenacity (for measuring)."""

    async def call(  # type: ignore[override]
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
        limit = self._ensure_started()
        limits = self.limits
        tried = 0
        while True:
            if self._rpm is not None:
                await self._rpm.take(1)
            if self._tpm is not None:
                await self._tpm.take(tokens)
            await limit.acquire()
            if tried == 0 and self.budget.exhausted:
                # Reached while this request waited for a slot: it is not started at all.
                await limit.release(success=False, throttled=False, window_s=self._window_s)
                return CallResult(NOT_ATTEMPTED, error=BUDGET_REACHED)
            tried += 1
            sent = time.monotonic()
            try:
                value = await attempt()
            except (TimeoutError, openai.OpenAIError, OSError) as exc:
                kind, retryable = classify(exc)
                self.attempts[kind] += 1
                await limit.release(
                    success=False, throttled=kind == "rate_limited", window_s=self._window_s
                )
                if not retryable or tried > limits.max_retries:
                    error = describe_error(exc)
                    if kind == CONTEXT_LENGTH_EXCEEDED:
                        error = f"{CONTEXT_LENGTH_EXCEEDED}: {error}"
                    return CallResult(ERROR, error=error, attempts=tried, kind=kind)
                floor = retry_after_s(exc) if kind in ("rate_limited", "server_error") else None
                await asyncio.sleep(self._backoff(tried, floor))
                continue
            # A window is about one round trip (mean latency of recent attempts), and at
            # least a second: endpoints count their limits per second or minute.
            took = time.monotonic() - sent
            self._window_s = max(1.0, 0.9 * self._window_s + 0.1 * took)
            self.attempts[OK] += 1
            await limit.release(success=True, throttled=False, window_s=self._window_s)
            if self._tpm is not None and usage is not None:
                self._tpm.adjust(usage(value) - tokens)
            if cost is not None:
                self.budget.charge(cost(value))
            return CallResult(OK, value=value, attempts=tried)


async def _cpu_per_call(engine: CallEngine, n: int) -> float:
    async def ok():
        return 1

    async def one(_):
        return await engine.call(ok)

    started = time.process_time()
    await engine.map(range(n), one, skipped=lambda _: None, status=lambda r: r.status)
    return (time.process_time() - started) / n * 1e6


async def _rate(take, n: int, callers: int = 64) -> float:
    queue = iter(range(n))

    async def caller():
        for _ in queue:
            await take()

    started = time.monotonic()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return n / (time.monotonic() - started)


async def _tpm_rate(kind: str, *, seconds: float, tpm: float, estimate: int, used: int) -> float:
    """Calls a second through a tokens-per-minute bucket (the call itself takes no time)."""
    bucket = RateBucket(tpm)
    limiter = aiolimiter.AsyncLimiter(max(tpm / 60, 1.0), 1.0)
    done = 0
    deadline = time.monotonic() + seconds

    async def caller():
        nonlocal done
        while time.monotonic() < deadline:
            if kind == "depsim":
                await bucket.take(estimate)
                bucket.adjust(used - estimate)  # what the call really used, known after it
            else:
                await limiter.acquire(estimate)  # nothing to give back afterwards
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(caller() for _ in range(16)))
    return done / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    random.seed(0)
    cpu: dict[str, list[float]] = {"own_loop": [], "tenacity": []}
    for _ in range(args.runs):  # interleaved, so drift on a shared machine hits both
        for name, cls in (("own_loop", OwnLoopEngine), ("tenacity", CallEngine)):
            cpu[name].append(asyncio.run(_cpu_per_call(cls(Limits(max_concurrency=64)),
                                                       args.calls)))
    rpm, n = 1200.0, 80  # 20 a second: a one-second burst of 20, then 60 more in 3 s
    bucket = RateBucket(rpm)
    limiter = aiolimiter.AsyncLimiter(rpm / 60, 1.0)
    rates = {
        "depsim": asyncio.run(_rate(lambda: bucket.take(1), n)),
        "aiolimiter": asyncio.run(_rate(lambda: limiter.acquire(1), n)),
    }
    tpm = {kind: asyncio.run(_tpm_rate(kind, seconds=3.0, tpm=600_000, estimate=1200, used=300))
           for kind in ("depsim", "aiolimiter")}
    result = {
        "cpu_us_per_call": {k: round(statistics.median(v), 1) for k, v in cpu.items()},
        "cpu_us_per_call_runs": {k: [round(x, 1) for x in v] for k, v in cpu.items()},
        "rpm_1200_achieved_per_s_80_requests": {k: round(v, 2) for k, v in rates.items()},
        "rpm_1200_ideal_per_s_80_requests": round(n / ((n - rpm / 60) / (rpm / 60)), 2),
        "tpm_600k_calls_per_s_estimate_1200_used_300": {k: round(v, 1) for k, v in tpm.items()},
        "tpm_600k_ideal_calls_per_s": round(600_000 / 60 / 300, 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
