"""Uniform, seeded sampling of a stream in bounded memory.

Each item gets a key ``sha256(f"{seed}|{conversation_id}")``; the sample is the ``n`` items
with the smallest keys (bottom-k), kept in a heap of size ``n``. The keys behave like
independent uniform draws, so every size-``n`` subset is equally likely, and because a key
depends only on the seed and the id, the sample does not depend on file order. A smaller
sample of the same seed is a subset of a larger one. ``fraction`` mode keeps every item whose
key falls below ``fraction`` of the key space: a Bernoulli sample with the same properties.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

_KEY_BITS = 64
_KEY_SPACE = 1 << _KEY_BITS


def sample_key(seed: int, conversation_id: str) -> int:
    """The 64-bit sampling key of one conversation under ``seed``."""
    digest = hashlib.sha256(f"{seed}|{conversation_id}".encode()).digest()
    return int.from_bytes(digest[: _KEY_BITS // 8], "big")


class Sampler(Generic[T]):
    """Offer items one at a time; :meth:`result` returns the sample in key order.

    Exactly one of ``n`` (sample size, bottom-k) and ``fraction`` (0 < f <= 1) is given.
    Ids must be unique among offered items.
    """

    def __init__(self, *, seed: int, n: int | None = None, fraction: float | None = None):
        if (n is None) == (fraction is None):
            raise ValueError("give exactly one of n and fraction")
        if n is not None and n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if fraction is not None and not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        self.seed = seed
        self.n = n
        self.fraction = fraction
        self.offered = 0
        # Max-heap by key (keys negated) so the worst kept item is at the root; the id breaks
        # the (astronomically rare) tie so items themselves are never compared.
        self._heap: list[tuple[int, str, T]] = []
        self._kept: list[tuple[int, str, T]] = []
        self._threshold = int(fraction * _KEY_SPACE) if fraction is not None else 0

    def offer(self, conversation_id: str, item: T) -> None:
        """Consider one item for the sample."""
        self.offered += 1
        key = sample_key(self.seed, conversation_id)
        if self.fraction is not None:
            if key < self._threshold:
                self._kept.append((key, conversation_id, item))
            return
        if len(self._heap) < (self.n or 0):
            heapq.heappush(self._heap, (-key, conversation_id, item))
        elif self._heap and -key > self._heap[0][0]:
            heapq.heapreplace(self._heap, (-key, conversation_id, item))

    def result(self) -> list[T]:
        """The sampled items, smallest key first."""
        if self.fraction is not None:
            ordered = sorted(self._kept, key=lambda e: (e[0], e[1]))
            return [item for _, _, item in ordered]
        ordered_neg = sorted(self._heap, key=lambda e: (-e[0], e[1]))
        return [item for _, _, item in ordered_neg]


@dataclass(frozen=True)
class Sample(Generic[T]):
    """A sample and the population it was drawn from."""

    items: list[T]
    population: int

    @property
    def weight(self) -> float:
        """Population items per sampled item (0.0 for an empty sample)."""
        return self.population / len(self.items) if self.items else 0.0


def sample_items(
    items: Iterable[T],
    *,
    seed: int,
    n: int | None = None,
    fraction: float | None = None,
    id_of: Callable[[T], str] = lambda item: item.conversation_id,  # type: ignore[attr-defined]
) -> Sample[T]:
    """Uniform seeded sample of ``items`` (bottom-k of ``n``, or Bernoulli ``fraction``)."""
    sampler: Sampler[T] = Sampler(seed=seed, n=n, fraction=fraction)
    for item in items:
        sampler.offer(id_of(item), item)
    return Sample(sampler.result(), sampler.offered)
