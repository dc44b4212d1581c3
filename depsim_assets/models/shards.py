"""One list of model calls sharded over worker processes, each running its own call engine.

One asyncio process serves all of its requests on one thread: the engine, the ``openai``
client and the JSON parsing of every answer share one core. When the client's CPU per call
times the request rate nears that core (hundreds of calls a second), the process, not the
endpoint, sets the pace. A :class:`ShardPool` splits the requests into contiguous slices,
one per worker process, and each worker runs ``job(slice, concurrency)`` with its share of
the concurrency cap, so the endpoint still sees at most the cap in flight in total.

What the caller divides, because workers share nothing: the concurrency cap (done here, see
:func:`split_evenly`), and any rate limits or spending budget its job applies (give each
shard its share). Results come back in input order once every shard has finished; a job
that stores its answers as they arrive does so inside its worker. Workers are started
with ``spawn`` (no inherited threads or open connections) and kept for the pool's life, so
a warm pool pays the interpreter start and imports once.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` whole shares that differ by at most one (larger first)."""
    if parts < 1:
        raise ValueError(f"parts must be at least 1, not {parts}")
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def slices(n: int, parts: int) -> list[range]:
    """Contiguous index ranges covering ``range(n)``, one per part (sizes differ by <= 1)."""
    out, start = [], 0
    for size in split_evenly(n, parts):
        out.append(range(start, start + size))
        start += size
    return out


def _noop() -> None:
    """Run once in each worker by :meth:`ShardPool.warm`."""


class ShardPool:
    """``workers`` processes that each run one shard of a list of calls.

    ``job(items, concurrency)`` must be a module-level function (it is pickled to the
    worker) that makes the calls for ``items`` with at most ``concurrency`` in flight and
    returns one result per item, in order.
    """

    def __init__(self, workers: int, *, initializer: Callable[[], object] | None = None):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.workers = workers
        self._pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=initializer,
        )

    def warm(self) -> None:
        """Start every worker now (interpreter and imports), not on the first real call."""
        for future in [self._pool.submit(_noop) for _ in range(self.workers)]:
            future.result()

    def map(
        self,
        job: Callable[[list[T], int], list[R]],
        items: Sequence[T],
        *,
        concurrency: int,
    ) -> list[R]:
        """``job`` over ``items`` split across the workers, ``concurrency`` in flight in
        total; results in input order."""
        parts = min(self.workers, len(items), concurrency) or 1
        shares = split_evenly(concurrency, parts)
        futures = [
            self._pool.submit(job, [items[i] for i in part], share)
            for part, share in zip(slices(len(items), parts), shares, strict=True)
        ]
        results: list[R] = []
        for part, future in zip(slices(len(items), parts), futures, strict=True):
            got = future.result()
            if len(got) != len(part):
                raise RuntimeError(
                    f"a shard returned {len(got)} results for {len(part)} items")
            results.extend(got)
        return results

    def close(self) -> None:
        """Stop the workers (waits for running shards)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ShardPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
