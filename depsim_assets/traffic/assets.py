"""Dagster wrappers of the traffic stage: sample and de-identify a day, then cut prefixes."""

import json
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
from dagster_duckdb import DuckDBResource
from pydantic import Field

from depsim_assets.metadata import md_table
from depsim_assets.partitions import traffic_date
from depsim_assets.resources import TrafficSource
from depsim_assets.traffic.eligibility import EligibilityConfig
from depsim_assets.traffic.pipeline import prefix_rows_from_sampled, run_sampling
from depsim_assets.traffic.residue import scan_rows, summarize
from depsim_assets.warehouse import (
    CONVERSATION_PREFIXES,
    SAMPLED_CONVERSATIONS,
    SAMPLING_FUNNEL,
    SAMPLING_QUARANTINE,
    read_partition,
    replace_partitions,
)

GROUP = "traffic"
DEFAULT_SAMPLE_SIZE = 400


class SamplingConfig(dg.Config):
    """How a day is sampled."""

    sample_size: int = Field(DEFAULT_SAMPLE_SIZE, description="Conversations to sample.")
    sample_fraction: float | None = Field(
        None, description="Sample this fraction of eligible conversations instead of a count."
    )
    stratify_by: str | None = Field(
        None,
        description="Stratify by 'source', 'model' or 'metadata.<key>' (proportional allocation).",
    )
    seed: int = Field(20261126, description="Seed of the uniform sample.")
    exclude_sources: list[str] = Field(["internal_test"], description="Sources never sampled.")
    exclude_models: list[str] = Field([], description="Production models never sampled.")
    exclude_metadata: dict[str, list[str]] = Field(
        {}, description="Metadata key -> values whose conversations are never sampled."
    )


@dg.asset(
    partitions_def=traffic_date,
    group_name=GROUP,
    code_version="sampling-v1",
    metadata={"dagster/column_schema": SAMPLED_CONVERSATIONS.column_schema()},
)
def sampled_conversations(
    context: dg.AssetExecutionContext,
    config: SamplingConfig,
    warehouse: DuckDBResource,
    traffic: TrafficSource,
) -> dg.MaterializeResult:
    """One row per sampled, de-identified conversation of the day.

    Reads the day's production log, quarantines malformed records (table
    ``sampling_quarantine``: one row per rejected record with its reason, never its text),
    drops ineligible ones (opted out, multimodal, excluded sources), draws a uniform seeded
    sample of the eligible rest, and replaces PII with consistent surrogates before anything
    is written. ``sampling_funnel`` holds the counts, which reconcile:
    records_in = quarantined + ineligible + eligible.
    """
    day = context.partition_key
    result = run_sampling(
        Path(traffic.log_root),
        day,
        n=None if config.sample_fraction is not None else config.sample_size,
        fraction=config.sample_fraction,
        seed=config.seed,
        salt=traffic.deid_salt,
        eligibility=EligibilityConfig(
            exclude_sources=tuple(config.exclude_sources),
            exclude_models=tuple(config.exclude_models),
            exclude_metadata={k: tuple(v) for k, v in config.exclude_metadata.items()},
        ),
        stratify_by=config.stratify_by,
    )
    sampled = pd.DataFrame(result.sampled_rows, columns=SAMPLED_CONVERSATIONS.column_names)
    quarantine = pd.DataFrame(result.quarantine_rows, columns=SAMPLING_QUARANTINE.column_names)
    funnel = pd.DataFrame(result.funnel_rows, columns=SAMPLING_FUNNEL.column_names)
    keys = {"traffic_date": day}
    with warehouse.get_connection() as conn:
        # One transaction for all three tables: a crash never leaves a sample without its funnel.
        replace_partitions(
            conn,
            [
                (SAMPLED_CONVERSATIONS, sampled, keys),
                (SAMPLING_QUARANTINE, quarantine, keys),
                (SAMPLING_FUNNEL, funnel, keys),
            ],
        )
    counts = result.counts
    context.log.info("sampling %s: %s", day, json.dumps(counts, sort_keys=True))
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(sampled),
            "dagster/column_schema": SAMPLED_CONVERSATIONS.column_schema(),
            "records_in": counts["records_in"],
            "quarantined": counts["quarantined"],
            "eligible": counts["eligible"],
            "sampled": counts["sampled"],
            "quarantine_reasons": dg.MetadataValue.json(counts["quarantine_reasons"]),
            "ineligible": dg.MetadataValue.json(counts["ineligible"]),
            "pii_replaced": dg.MetadataValue.json(counts["pii_replaced"]),
            **({"strata": dg.MetadataValue.json(counts["strata"])} if "strata" in counts else {}),
            "funnel": dg.MetadataValue.md(md_table(funnel)),
            "preview": dg.MetadataValue.md(
                md_table(
                    sampled,
                    columns=[
                        "conversation_id",
                        "source",
                        "n_messages",
                        "has_tool_calls",
                        "pii_counts_json",
                    ],
                    max_rows=10,
                )
            ),
        }
    )


@dg.asset(
    partitions_def=traffic_date,
    group_name=GROUP,
    deps=[sampled_conversations],
    code_version="prefixes-v1",
    metadata={"dagster/column_schema": CONVERSATION_PREFIXES.column_schema()},
)
def conversation_prefixes(
    context: dg.AssetExecutionContext, warehouse: DuckDBResource
) -> dg.MaterializeResult:
    """One row per sampled conversation: the fixed prefix and the original final reply.

    The prefix is everything before the final assistant turn, tool calls and tool results
    included; it is what every candidate regenerates the final reply from.
    """
    day = context.partition_key
    keys = {"traffic_date": day}
    with warehouse.get_connection() as conn:
        sampled = read_partition(conn, SAMPLED_CONVERSATIONS, keys)
        rows = prefix_rows_from_sampled(sampled.to_dict("records"))
        prefixes = pd.DataFrame(rows, columns=CONVERSATION_PREFIXES.column_names)
        replace_partitions(conn, [(CONVERSATION_PREFIXES, prefixes, keys)])
    if prefixes.empty:
        context.log.warning(f"no sampled conversations for {day}: run sampled_conversations")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(prefixes),
            "dagster/column_schema": CONVERSATION_PREFIXES.column_schema(),
            "mean_prefix_messages": float(prefixes["n_prefix_messages"].mean())
            if len(prefixes)
            else 0.0,
            "preview": dg.MetadataValue.md(
                md_table(
                    prefixes,
                    columns=["conversation_id", "n_prefix_messages", "original_reply"],
                    max_rows=10,
                )
            ),
        }
    )


@dg.asset_check(
    asset=sampled_conversations,
    partitions_def=traffic_date,
    blocking=True,
    description="Re-scans the day's de-identified conversations for residual PII.",
)
def no_residual_pii(
    context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource
) -> dg.AssetCheckResult:
    """Fails when any text of the partition looks like personal data that is not a surrogate.

    Runs the de-identifier's own detectors plus independent patterns (``traffic/residue.py``);
    hits are reported by conversation, message and type, never with their text. Blocking: a
    failure stops ``conversation_prefixes`` from being built from the partition in that run.
    """
    with warehouse.get_connection() as conn:
        return residual_pii_result(conn, context.partition_key)


def residual_pii_result(conn: duckdb.DuckDBPyConnection, day: str) -> dg.AssetCheckResult:
    """The residue check's result for one day of ``sampled_conversations``."""
    rows = read_partition(conn, SAMPLED_CONVERSATIONS, {"traffic_date": day})
    scanned, hits = scan_rows(rows.to_dict("records"))
    where = [
        {"conversation_id": h.conversation_id, "message": h.message_index, "type": h.kind}
        for h in hits[:20]
    ]
    return dg.AssetCheckResult(
        passed=not hits,
        metadata={
            "rows_scanned": scanned,
            "hits": len(hits),
            "hits_by_type": dg.MetadataValue.json(summarize(hits)),
            "first_hits": dg.MetadataValue.json(where),
        },
    )
