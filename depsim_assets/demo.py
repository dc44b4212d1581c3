"""The demo: a seeded synthetic production log, the sim candidates, the whole graph."""

from __future__ import annotations

import datetime as dt

from depsim_assets.config import registry_path
from depsim_assets.registry import Candidate, Registry, load_registry, save_registry

DEMO_END_DATE = "2026-11-03"
DEMO_DAYS = 3
DEMO_PER_DAY = 2000
DEMO_SAMPLE_SIZE = 1200
DEMO_SEED = 7

SIM_CANDIDATES = (
    Candidate(
        name="sim-production",
        base_url="sim",
        model="sim-production",
        params={"temperature": 1.0, "max_tokens": 512},
        max_concurrency=32,
    ),
    Candidate(
        name="sim-candidate-safer",
        base_url="sim",
        model="sim-candidate-safer",
        params={"temperature": 1.0, "max_tokens": 512},
        max_concurrency=32,
    ),
    Candidate(
        name="sim-candidate-regressed",
        base_url="sim",
        model="sim-candidate-regressed",
        params={"temperature": 1.0, "max_tokens": 512},
        max_concurrency=32,
    ),
)
SIM_BASELINE = "sim-production"


def demo_dates(end_date: str = DEMO_END_DATE, days: int = DEMO_DAYS) -> list[str]:
    """``days`` consecutive ISO dates ending on ``end_date``."""
    end = dt.date.fromisoformat(end_date)
    return [(end - dt.timedelta(days=i)).isoformat() for i in reversed(range(days))]


def register_sim_candidates() -> Registry:
    """Put the sim candidates in the registry (keeping any others); sim-production is baseline."""
    path = registry_path()
    current = load_registry(path) if path.exists() else Registry()
    sim_names = {c.name for c in SIM_CANDIDATES}
    others = [c for c in current.candidates if c.name not in sim_names]
    registry = Registry(
        baseline=current.baseline or SIM_BASELINE,
        candidates=[*SIM_CANDIDATES, *others],
    )
    save_registry(registry, path)
    return registry
