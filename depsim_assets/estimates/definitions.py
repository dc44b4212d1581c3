"""The estimates stage's Dagster definitions: what it materializes and what guards it."""

import dagster as dg

from depsim_assets.estimates.assets import (
    behavior_rates,
    candidate_comparison,
    forecast_validation,
)
from depsim_assets.estimates.checks import candidate_comparison_coverage

defs = dg.Definitions(
    assets=[behavior_rates, candidate_comparison, forecast_validation],
    asset_checks=[candidate_comparison_coverage],
)
