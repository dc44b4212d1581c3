"""The Dagster code location: assets, resources and sensors on the embedded defaults.

Paths come from the depsim home folder (``$DEPSIM_HOME``, default ``./.depsim``); the judge
endpoint from ``DEPSIM_JUDGE_BASE_URL`` / ``DEPSIM_JUDGE_MODEL`` / ``DEPSIM_JUDGE_API_KEY_ENV``
(default: the built-in simulator's ``sim-judge``).
"""

from __future__ import annotations

import os

import dagster as dg
from dagster_duckdb import DuckDBResource

from depsim_assets.automation import candidate_registry_sensor
from depsim_assets.config import log_root, registry_path, warehouse_path
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
from depsim_assets.resources import CandidateRegistry, JudgeEndpoint, TrafficSource
from depsim_assets.traffic.assets import (
    conversation_prefixes,
    no_residual_pii,
    sampled_conversations,
)

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
]

# A fixed salt keeps the demo reproducible; real deployments set their own secret salt.
DEMO_SALT = "depsim-demo-salt"


def build_resources() -> dict[str, object]:
    """Resources on the embedded defaults, read from the environment at call time."""
    warehouse = warehouse_path()
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    salt_env = "DEPSIM_DEID_SALT"
    return {
        "warehouse": DuckDBResource(database=str(warehouse)),
        "traffic": TrafficSource(
            log_root=str(log_root()),
            deid_salt=dg.EnvVar(salt_env) if os.environ.get(salt_env) else DEMO_SALT,
        ),
        "registry": CandidateRegistry(path=str(registry_path())),
        "judge": JudgeEndpoint(
            base_url=os.environ.get("DEPSIM_JUDGE_BASE_URL", "sim"),
            model=os.environ.get("DEPSIM_JUDGE_MODEL", "sim-judge"),
            api_key_env=os.environ.get("DEPSIM_JUDGE_API_KEY_ENV") or None,
        ),
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
    return dg.Definitions(
        assets=assets, resources=build_resources(), sensors=[candidate_registry_sensor]
    )


defs = build_definitions()
