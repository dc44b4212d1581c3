"""The replay stage's Dagster definitions: what it materializes and what guards it."""

import dagster as dg

from depsim_assets.replay.assets import candidate_completions
from depsim_assets.replay.checks import (
    candidate_completions_complete,
    candidate_completions_error_share,
)

defs = dg.Definitions(
    assets=[candidate_completions],
    asset_checks=[candidate_completions_complete, candidate_completions_error_share],
)
