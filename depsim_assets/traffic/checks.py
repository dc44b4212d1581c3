"""Asset checks of the traffic stage (the residual-PII check sits beside its asset).

``sampled_conversations_min_size`` is blocking: a day with too few conversations to estimate
anything (``DEPSIM_MIN_SAMPLE``, 30) does not become prefixes, and so no replay, in that run.
The logic is a plain function, testable without Dagster.
"""

import dagster as dg
from dagster_duckdb import DuckDBResource

from depsim_assets.config import env_threshold
from depsim_assets.partitions import partitioned_asset_check, traffic_date
from depsim_assets.traffic.assets import sampled_conversations
from depsim_assets.warehouse import SAMPLED_CONVERSATIONS, ensure_tables

DEFAULT_MIN_SAMPLE = 30


class MinSampleConfig(dg.Config):
    """Minimum sample of a day (unset: ``$DEPSIM_MIN_SAMPLE``, else 30)."""

    min_sample: int | None = None


def min_sample_result(rows: int, minimum: int) -> dg.AssetCheckResult:
    """Passes when the day's sample has at least ``minimum`` conversations."""
    return dg.AssetCheckResult(
        passed=rows >= minimum,
        description=f"{rows} conversations sampled; minimum {minimum}",
        metadata={"sampled": rows, "min_sample": minimum},
    )


@partitioned_asset_check(
    asset=sampled_conversations,
    name="sampled_conversations_min_size",
    partitions_def=traffic_date,
    blocking=True,
    description=(
        "Fails a day whose sample is smaller than the configured minimum "
        "(DEPSIM_MIN_SAMPLE, default 30): rates from a handful of conversations are noise."
    ),
)
def sampled_conversations_min_size(
    context: dg.AssetCheckExecutionContext, config: MinSampleConfig, warehouse: DuckDBResource
) -> dg.AssetCheckResult:
    """Blocking: a too-small day does not become prefixes (and so no replay) in that run."""
    minimum = config.min_sample
    if minimum is None:
        minimum = int(env_threshold("DEPSIM_MIN_SAMPLE", DEFAULT_MIN_SAMPLE, high=1e12))
    with warehouse.get_connection() as conn:
        ensure_tables(conn)
        found = conn.execute(
            f"SELECT count(*) FROM {SAMPLED_CONVERSATIONS.name} WHERE traffic_date = ?",
            [context.partition_key],
        ).fetchone()
    return min_sample_result(int(found[0]) if found else 0, minimum)
