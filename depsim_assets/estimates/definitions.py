"""The estimates stage's Dagster definitions: what it materializes and what guards it.

Kinds, owner and ``stage`` tag are set here, once for the stage (``metadata.stage_definitions``
maps the asset specs), so the asset modules carry only what the assets do.
"""

from depsim_assets.estimates.assets import (
    behavior_rates,
    candidate_comparison,
    forecast_validation,
)
from depsim_assets.estimates.checks import candidate_comparison_coverage
from depsim_assets.metadata import stage_definitions

defs = stage_definitions(
    "estimates",
    assets=[behavior_rates, candidate_comparison, forecast_validation],
    asset_checks=[candidate_comparison_coverage],
    # Counting in DuckDB SQL, intervals, tests and plots in Python; no model call.
    kinds={
        "behavior_rates": {"python", "duckdb"},
        "candidate_comparison": {"python", "duckdb"},
        "forecast_validation": {"python", "duckdb"},
    },
)
