"""The Dagster code location: assets, resources and sensors on the embedded defaults.

Paths come from the depsim home folder (``$DEPSIM_HOME``, default ``./.depsim``); the judge
from the ``DEPSIM_JUDGE_*`` variables (``resources.JUDGE_ENV``: endpoint, model, key variable,
timeout, concurrency, retries, output mode, context window, layout...; default: the built-in
simulator's ``sim-judge``).
"""

from __future__ import annotations

import os

import dagster as dg

from depsim_assets import config
from depsim_assets.automation import automation_definitions
from depsim_assets.checks import CHECKS
from depsim_assets.config import env_float, log_root, registry_path, warehouse_path
from depsim_assets.estimates.assets import (
    behavior_rates,
    candidate_comparison,
    forecast_validation,
)
from depsim_assets.judging.assets import (
    judge_agreement,
    judge_grades,
    judge_grades_unscored_share,
    novel_behaviors,
)
from depsim_assets.replay.assets import candidate_completions
from depsim_assets.resources import (
    CandidateRegistry,
    JudgeEndpoint,
    RunBudget,
    TrafficSource,
    Warehouse,
)
from depsim_assets.traffic.assets import (
    conversation_prefixes,
    no_residual_pii,
    sampled_conversations,
)
from depsim_assets.warehouse import LOCK_TIMEOUT_S

ASSETS = [
    sampled_conversations,
    conversation_prefixes,
    candidate_completions,
    judge_grades,
    behavior_rates,
    candidate_comparison,
    forecast_validation,
    novel_behaviors,
    judge_agreement,
    # An asset check: listed with the assets so `dg.materialize(ASSETS, selection=...)` runs
    # it with the judge_grades partition it checks.
    judge_grades_unscored_share,
    # Residual-PII check of sampled_conversations, run with each traffic partition.
    no_residual_pii,
    # Sample size, completeness, error share, version and comparison coverage (checks.py).
    *CHECKS,
]

STEPS_ENV = "DEPSIM_MAX_CONCURRENT_STEPS"

DEMO_SALT = config.DEMO_SALT  # `depsim demo` sets it explicitly; nothing else defaults to it


def build_resources() -> dict[str, object]:
    """Resources on the embedded defaults, read from the environment at call time."""
    warehouse = warehouse_path()
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    salt_env = config.SALT_ENV
    return {
        "warehouse": Warehouse(
            database=str(warehouse),
            lock_timeout_s=env_float("DEPSIM_LOCK_TIMEOUT_S", low=0.0) or LOCK_TIMEOUT_S,
        ),
        "traffic": TrafficSource(
            log_root=str(log_root()),
            # No default: an unset salt fails the sampling step with how to make one.
            deid_salt=dg.EnvVar(salt_env) if os.environ.get(salt_env) else "",
        ),
        "registry": CandidateRegistry(path=str(registry_path())),
        # Every judge setting from its DEPSIM_JUDGE_* variable (resources.JUDGE_ENV), resolved
        # again when a run overrides part of the judge's config, so the two cannot disagree.
        "judge": JudgeEndpoint(),
        "budget": RunBudget(max_usd=env_float("DEPSIM_RUN_BUDGET_USD", low=0.0)),
    }


def build_definitions() -> dg.Definitions:
    """The whole code location.

    ``judge_agreement`` is shown only when a labels file is configured
    (``DEPSIM_JUDGE_LABELS``): without one it can only fail, and it would make
    "Materialize all" fail on a fresh home folder.
    """
    assets = [
        a for a in ASSETS if a is not judge_agreement or os.environ.get("DEPSIM_JUDGE_LABELS")
    ]
    # The daily schedule, the registry and new-day sensors, and the jobs they launch.
    jobs, schedules, sensors = automation_definitions()
    return dg.Definitions(
        assets=assets,
        resources=build_resources(),
        jobs=jobs,
        schedules=schedules,
        sensors=sensors,
        executor=build_executor(),
    )


def build_executor() -> dg.ExecutorDefinition:
    """Dagster's multiprocess executor: every step its own process, at most
    ``$DEPSIM_MAX_CONCURRENT_STEPS`` (default 2) at once per run.

    Steps are forked from a forkserver that has imported this module once, so a step does not
    pay the import again. Runs launched from the UI, the daemon (backfills, sensors) and
    ``dagster job``/``asset`` commands use it; ``dg.materialize`` (the ``depsim`` commands)
    runs in process. Parallel steps and runs share the warehouse file through
    :class:`~depsim_assets.resources.Warehouse`, which waits its turn for DuckDB's lock.
    """
    raw = os.environ.get(STEPS_ENV, "").strip() or "2"
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{STEPS_ENV}={raw!r}: expected a whole number >= 1")
    return dg.multiprocess_executor.configured(
        # Preload named explicitly: an empty forkserver config preloads only dagster, and
        # every step process then imports the code location again (~5 s of CPU each).
        {
            "max_concurrent": int(raw),
            "start_method": {"forkserver": {"preload_modules": [__name__]}},
        },
        name="depsim_multiprocess",
    )


defs = build_definitions()
