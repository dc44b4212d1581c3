"""The traffic stage's Dagster definitions: what it materializes and what guards it."""

import dagster as dg

from depsim_assets.traffic.assets import (
    conversation_prefixes,
    no_residual_pii,
    sampled_conversations,
)
from depsim_assets.traffic.checks import sampled_conversations_min_size

defs = dg.Definitions(
    assets=[sampled_conversations, conversation_prefixes],
    asset_checks=[no_residual_pii, sampled_conversations_min_size],
)
