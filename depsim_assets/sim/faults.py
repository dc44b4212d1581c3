"""Fault injection for the simulator: what real endpoints do on a bad day, on purpose.

A fault plan gives per-request probabilities of a 429 (with ``Retry-After``), a 500, a hung
request (answered only after the client has given up), a dropped connection (the server
starts the response and closes the socket, so the client sees a connection error), and, for
the judge, malformed structured output; plus a latency distribution (fixed, uniform jitter,
or lognormal around a median). For the Batch API it sets how long a batch takes and which of
its lines fail or go missing.

Every setting can be given for all models or overridden for one (``MODEL:key=value``), so one
server can host a slow model next to a fast one. Decisions are deterministic under the plan's
seed: each is a hash of (seed, model, request body, how many times that body was seen), so a
retried request gets a fresh draw and the same sequence of requests meets the same faults.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections import Counter
from dataclasses import dataclass, field, fields
from statistics import NormalDist
from typing import Any

SPEC_HELP = (
    "comma-separated key=value: 429=P, 500=P, hang=P, drop=P, malformed=P (probabilities), "
    "retry_after=S, hang_s=S, latency=fixed|uniform|lognormal, latency_ms=MS (the median), "
    "jitter_ms=MS (uniform: +/- MS), latency_sigma=S (lognormal), batch_delay_s=S, "
    "batch_fail=P, batch_drop=P (batch lines), seed=N, models=a+b (default: all); "
    "MODEL:key=value overrides one setting for one model"
)

_ALIASES = {"429": "rate_429", "500": "rate_500", "hang": "rate_hang", "drop": "rate_drop",
            "malformed": "rate_malformed", "latency": "latency_dist",
            "batch_fail": "rate_batch_fail", "batch_drop": "rate_batch_drop"}
LATENCY_DISTS = ("fixed", "uniform", "lognormal")
# Settings of the whole server, not of one model's requests.
_GLOBAL_ONLY = {"seed", "models"}
_NORMAL = NormalDist()


@dataclass
class FaultPlan:
    """Per-request fault probabilities, latency and batch behaviour; per-model overrides."""

    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_hang: float = 0.0
    rate_drop: float = 0.0
    rate_malformed: float = 0.0
    retry_after: float = 1.0
    hang_s: float = 30.0
    latency_dist: str = ""  # "" = uniform when jitter_ms is set, else fixed
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    latency_sigma: float = 0.5
    batch_delay_s: float = 1.0
    rate_batch_fail: float = 0.0
    rate_batch_drop: float = 0.0
    seed: int = 0
    models: tuple[str, ...] = ()
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    _seen: Counter = field(default_factory=Counter, repr=False, compare=False)
    _resolved: dict[str, FaultPlan] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._check(self, "")
        for model, settings in self.overrides.items():
            self._check(dataclasses.replace(self, overrides={}, **settings), f"{model}:")

    @staticmethod
    def _check(plan: FaultPlan, where: str) -> None:
        for f in fields(plan):
            value = getattr(plan, f.name)
            if f.name.startswith("rate_") and not 0 <= value <= 1:
                raise ValueError(f"fault spec {where}{f.name}: a probability lies in [0, 1]")
        edge = plan.rate_429 + plan.rate_500 + plan.rate_hang + plan.rate_drop
        if edge + plan.rate_malformed > 1 + 1e-9:
            raise ValueError(f"fault spec {where}: fault probabilities sum to more than 1")
        if plan.rate_batch_fail + plan.rate_batch_drop > 1 + 1e-9:
            raise ValueError(f"fault spec {where}: batch_fail + batch_drop exceed 1")
        if plan.latency_dist not in ("", *LATENCY_DISTS):
            raise ValueError(
                f"fault spec {where}latency={plan.latency_dist}: one of {', '.join(LATENCY_DISTS)}"
            )
        for name in ("retry_after", "hang_s", "latency_ms", "jitter_ms", "latency_sigma",
                     "batch_delay_s"):
            if getattr(plan, name) < 0:
                raise ValueError(f"fault spec {where}{name}: must not be negative")

    @classmethod
    def parse(cls, spec: str) -> FaultPlan:
        """Build a plan from ``depsim sim serve --faults`` text; ValueError names a bad key."""
        base: dict[str, Any] = {}
        overrides: dict[str, dict[str, Any]] = {}
        known = {f.name: f for f in fields(cls) if not f.name.startswith("_")}
        known.pop("overrides")
        for part in filter(None, (p.strip() for p in spec.split(","))):
            key, sep, raw = part.partition("=")
            model, colon, key = key.strip().rpartition(":")
            name = _ALIASES.get(key.strip(), key.strip())
            if not sep or name not in known or (colon and (not model or name in _GLOBAL_ONLY)):
                raise ValueError(f"fault spec {part!r}: expected {SPEC_HELP}")
            raw = raw.strip()
            try:
                if name == "models":
                    value: Any = tuple(m for m in raw.split("+") if m)
                elif name == "seed":
                    value = int(raw)
                elif name == "latency_dist":
                    value = raw
                else:
                    value = float(raw)
                    if not math.isfinite(value):
                        raise ValueError(raw)
            except ValueError:
                raise ValueError(f"fault spec {part!r}: {raw!r} is not a number") from None
            (overrides.setdefault(model, {}) if colon else base)[name] = value
        return cls(**base, overrides=overrides)

    def for_model(self, model: str) -> FaultPlan:
        """The settings that apply to ``model``: the plan with that model's overrides."""
        plan = self._resolved.get(model)
        if plan is None:
            # A model left out by ``models=`` gets only its own overrides, on the defaults.
            base = self if not self.models or model in self.models else FaultPlan(seed=self.seed)
            plan = dataclasses.replace(base, overrides={}, **self.overrides.get(model, {}))
            self._resolved[model] = plan
        return plan

    def applies_to(self, model: str) -> bool:
        """Whether this plan touches requests for ``model``."""
        return not self.models or model in self.models or model in self.overrides

    def _uniform(self, model: str, digest: str, attempt: int, what: str) -> float:
        raw = hashlib.sha256(f"{self.seed}|{model}|{digest}|{attempt}|{what}".encode()).digest()
        return int.from_bytes(raw[:8], "big") / 2**64

    def latency_s(self, u: float) -> float:
        """Added latency for one request, from a uniform draw ``u`` in [0, 1)."""
        base = self.latency_ms / 1000
        dist = self.latency_dist or ("uniform" if self.jitter_ms else "fixed")
        if dist == "uniform":
            return max(base + (u * 2 - 1) * self.jitter_ms / 1000, 0.0)
        if dist == "lognormal":
            # latency_ms is the median; the tail is as heavy as sigma says (0.5: p99 ~ 3.2x p50).
            z = _NORMAL.inv_cdf(min(max(u, 1e-12), 1 - 1e-12))
            return base * math.exp(self.latency_sigma * z)
        return base

    def decide(self, model: str, body: bytes) -> tuple[str | None, float]:
        """``(fault, delay_s)`` for one request: 429, 500, hang, drop, malformed or None."""
        if not self.applies_to(model):
            return None, 0.0
        plan = self.for_model(model)
        digest = hashlib.sha256(body).hexdigest()
        self._seen[digest] += 1
        attempt = self._seen[digest]
        delay = plan.latency_s(self._uniform(model, digest, attempt, "jitter"))
        u = self._uniform(model, digest, attempt, "fault")
        edge = 0.0
        for fault, rate in (("429", plan.rate_429), ("500", plan.rate_500),
                            ("hang", plan.rate_hang), ("malformed", plan.rate_malformed),
                            ("drop", plan.rate_drop)):
            edge += rate
            if u < edge:
                return fault, delay
        return None, delay

    def batch_line_fault(self, model: str, custom_id: str, body: bytes) -> str | None:
        """``fail``, ``drop`` or None for one line of a batch (same body, same answer)."""
        if not self.applies_to(model):
            return None
        plan = self.for_model(model)
        digest = hashlib.sha256(custom_id.encode() + b"\0" + body).hexdigest()
        u = self._uniform(model, digest, 0, "batch")
        if u < plan.rate_batch_fail:
            return "fail"
        if u < plan.rate_batch_fail + plan.rate_batch_drop:
            return "drop"
        return None
