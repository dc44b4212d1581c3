"""Fault injection for the simulator: what real endpoints do on a bad day, on purpose.

A fault plan gives per-request probabilities of a 429 (with ``Retry-After``), a 500, a hung
request (answered only after the client has given up), and, for the judge, malformed
structured output; plus added latency. Decisions are deterministic under the plan's seed:
each is a hash of (seed, model, request body, how many times that body was seen), so a
retried request gets a fresh draw and the same sequence of requests meets the same faults.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field, fields

SPEC_HELP = (
    "comma-separated key=value: 429=P, 500=P, hang=P, malformed=P (probabilities), "
    "retry_after=S, hang_s=S, latency_ms=MS, jitter_ms=MS, seed=N, models=a+b (default: all)"
)

_ALIASES = {"429": "rate_429", "500": "rate_500", "hang": "rate_hang",
            "malformed": "rate_malformed"}


@dataclass
class FaultPlan:
    """Per-request fault probabilities and latency for some or all simulated models."""

    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_hang: float = 0.0
    rate_malformed: float = 0.0
    retry_after: float = 1.0
    hang_s: float = 30.0
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    seed: int = 0
    models: tuple[str, ...] = ()
    _seen: Counter = field(default_factory=Counter, repr=False, compare=False)

    @classmethod
    def parse(cls, spec: str) -> FaultPlan:
        """Build a plan from ``depsim sim serve --faults`` text; ValueError names a bad key."""
        plan = cls()
        known = {f.name for f in fields(cls) if not f.name.startswith("_")}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            key, sep, raw = part.partition("=")
            name = _ALIASES.get(key.strip(), key.strip())
            if not sep or name not in known:
                raise ValueError(f"fault spec {part!r}: expected {SPEC_HELP}")
            try:
                if name == "models":
                    value: object = tuple(m for m in raw.split("+") if m)
                elif name == "seed":
                    value = int(raw)
                else:
                    value = float(raw)
            except ValueError:
                raise ValueError(f"fault spec {part!r}: {raw!r} is not a number") from None
            if name.startswith("rate_") and not 0 <= float(value) <= 1:  # type: ignore[arg-type]
                raise ValueError(f"fault spec {part!r}: a probability lies in [0, 1]")
            setattr(plan, name, value)
        return plan

    def applies_to(self, model: str) -> bool:
        """Whether this plan touches requests for ``model``."""
        return not self.models or model in self.models

    def _uniform(self, model: str, digest: str, attempt: int, what: str) -> float:
        raw = hashlib.sha256(f"{self.seed}|{model}|{digest}|{attempt}|{what}".encode()).digest()
        return int.from_bytes(raw[:8], "big") / 2**64

    def decide(self, model: str, body: bytes) -> tuple[str | None, float]:
        """``(fault, delay_s)`` for one request: fault is 429, 500, hang, malformed or None."""
        if not self.applies_to(model):
            return None, 0.0
        digest = hashlib.sha256(body).hexdigest()
        self._seen[digest] += 1
        attempt = self._seen[digest]
        delay = self.latency_ms / 1000
        if self.jitter_ms:
            spread = self._uniform(model, digest, attempt, "jitter") * 2 - 1
            delay += spread * self.jitter_ms / 1000
        u = self._uniform(model, digest, attempt, "fault")
        edge = 0.0
        for fault, rate in (("429", self.rate_429), ("500", self.rate_500),
                            ("hang", self.rate_hang), ("malformed", self.rate_malformed)):
            edge += rate
            if u < edge:
                return fault, max(delay, 0.0)
        return None, max(delay, 0.0)
