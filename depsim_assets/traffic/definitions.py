"""The traffic stage's Dagster definitions: what it materializes and what guards it.

Kinds, owner and ``stage`` tag are set here, once for the stage (``metadata.stage_definitions``
maps the asset specs), so the asset modules carry only what the assets do.
"""

from depsim_assets.metadata import stage_definitions
from depsim_assets.traffic.assets import (
    conversation_prefixes,
    no_residual_pii,
    sampled_conversations,
)
from depsim_assets.traffic.checks import sampled_conversations_min_size
from depsim_assets.traffic.tool_examples import tool_examples

defs = stage_definitions(
    "traffic",
    assets=[sampled_conversations, conversation_prefixes, tool_examples],
    asset_checks=[no_residual_pii, sampled_conversations_min_size],
    # Both read logs or tables and de-identify or cut in Python; the rows land in DuckDB.
    kinds={
        "sampled_conversations": {"python", "duckdb"},
        "conversation_prefixes": {"python", "duckdb"},
        "tool_examples": {"python", "duckdb"},
    },
)
