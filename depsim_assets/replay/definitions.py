"""The replay stage's Dagster definitions: what it materializes and what guards it.

Kinds, owner and ``stage`` tag are set here, once for the stage (``metadata.stage_definitions``
maps the asset specs), so the asset modules carry only what the assets do.
"""

from depsim_assets.metadata import stage_definitions
from depsim_assets.replay.assets import candidate_completions
from depsim_assets.replay.checks import (
    candidate_completions_complete,
    candidate_completions_error_share,
)
from depsim_assets.replay.realism import tool_realism

defs = stage_definitions(
    "replay",
    assets=[candidate_completions, tool_realism],
    asset_checks=[candidate_completions_complete, candidate_completions_error_share],
    # Calls each candidate's OpenAI-compatible endpoint; stores the replies in DuckDB.
    kinds={
        "candidate_completions": {"openai", "duckdb"},
        # Calls the tool simulator and the discriminator; stores the verdict counts in DuckDB.
        "tool_realism": {"openai", "duckdb"},
    },
)
