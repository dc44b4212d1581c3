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
# The agentic day (tools declared, a task per conversation): every conversation is sampled.
# 800 turns give each of the regressed persona's two raised tool behaviours a power above
# 0.99 to be called `up` at alpha 0.1 (docs/agentic.md), and are the day the acceptance test
# (depsim_tests/sim/test_agentic_day_e2e.py) checks, same date and seed.
DEMO_AGENTIC_PER_DAY = 800

SIM_CANDIDATES = tuple(
    Candidate(
        name=model,
        base_url="sim",
        model=model,
        params={"temperature": 1.0, "max_tokens": 512},
        max_concurrency=32,
    )
    for model in ("sim-production", "sim-candidate-safer", "sim-candidate-regressed")
)
SIM_BASELINE = "sim-production"
# The demo's one "deployment": the safer candidate served production on the day after the
# simulated days, so forecast_validation can check its forecast against what happened.
DEPLOYED_CANDIDATE = "sim-candidate-safer"


def demo_dates(end_date: str = DEMO_END_DATE, days: int = DEMO_DAYS) -> list[str]:
    """``days`` consecutive ISO dates ending on ``end_date``."""
    end = dt.date.fromisoformat(end_date)
    return [(end - dt.timedelta(days=i)).isoformat() for i in reversed(range(days))]


def deployment_date(dates: list[str]) -> str:
    """The demo's deployment day: the day after the last simulated day."""
    return (dt.date.fromisoformat(max(dates)) + dt.timedelta(days=1)).isoformat()


def agentic_date(dates: list[str]) -> str:
    """The demo's agentic day: the day after the deployment day (its own folder of log)."""
    return (dt.date.fromisoformat(deployment_date(dates)) + dt.timedelta(days=1)).isoformat()


def register_sim_candidates(deployed_on: dict[str, list[str]] | None = None) -> Registry:
    """Put the sim candidates in the registry (keeping any others); sim-production is baseline.

    ``deployed_on`` maps a sim candidate to the days it served production.
    """
    path = registry_path()
    current = load_registry(path) if path.exists() else Registry()
    sim_names = {c.name for c in SIM_CANDIDATES}
    others = [c for c in current.candidates if c.name not in sim_names]
    days = deployed_on or {}
    sims = [c.model_copy(update={"deployed_on": days.get(c.name, [])}) for c in SIM_CANDIDATES]
    registry = Registry(
        baseline=current.baseline or SIM_BASELINE,
        candidates=[*sims, *others],
    )
    save_registry(registry, path)
    return registry
