"""Dagster wrappers of the traffic stage: sample and de-identify a day, then cut prefixes."""

import json
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
from dagster_duckdb import DuckDBResource
from pydantic import Field

from depsim_assets.config import env_threshold
from depsim_assets.metadata import rounded, table_metadata
from depsim_assets.partitions import traffic_date
from depsim_assets.resources import TrafficSource
from depsim_assets.traffic.eligibility import EligibilityConfig
from depsim_assets.traffic.pipeline import (
    DEFAULT_MAX_RESIDUAL_SHARE,
    RESIDUAL_PII,
    prefix_rows_from_sampled,
    run_sampling,
)
from depsim_assets.warehouse import (
    CONVERSATION_PREFIXES,
    SAMPLED_CONVERSATIONS,
    SAMPLING_FUNNEL,
    SAMPLING_QUARANTINE,
    SAMPLING_STATUS,
    TOOL_EXAMPLES,
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
    max_residual_share: float | None = Field(
        None,
        description="The day fails when more than this share of the sample is quarantined for "
        "residual PII (unset: $DEPSIM_MAX_RESIDUAL_SHARE, else 0.01).",
    )


def max_residual_share(configured: float | None) -> float:
    """The residual-PII threshold: run config, else ``$DEPSIM_MAX_RESIDUAL_SHARE``, else 1%."""
    if configured is not None:
        if not 0.0 <= configured <= 1.0:
            raise ValueError(f"max_residual_share must be in [0, 1], got {configured}")
        return configured
    return env_threshold("DEPSIM_MAX_RESIDUAL_SHARE", DEFAULT_MAX_RESIDUAL_SHARE)


@dg.asset(
    partitions_def=traffic_date,
    group_name=GROUP,
    code_version="sampling-v3",
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
    sample of the eligible rest, and replaces PII with consistent surrogates. Each
    de-identified conversation is scanned for residual PII by an independent layer before
    anything is written: one with a hit is quarantined (reason ``residual_pii``, its types and
    field paths, never text) and the day goes on. ``sampling_funnel`` holds the counts, which
    reconcile: records_in = quarantined + ineligible + eligible, and sampled = kept +
    residual_quarantined. ``sampling_status`` records the day's verdict; when more than
    ``max_residual_share`` of the sample is quarantined the day fails: no row is written to
    ``sampled_conversations`` or ``conversation_prefixes`` (quarantine, funnel and status
    are), and ``conversation_prefixes`` refuses the day.
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
        max_residual_share=max_residual_share(config.max_residual_share),
    )
    sampled = SAMPLED_CONVERSATIONS.frame(result.sampled_rows)
    quarantine = SAMPLING_QUARANTINE.frame(result.quarantine_rows)
    funnel = SAMPLING_FUNNEL.frame(result.funnel_rows)
    status = SAMPLING_STATUS.frame([result.status_row])
    keys = {"traffic_date": day}
    writes = [
        (SAMPLED_CONVERSATIONS, sampled, keys),
        (SAMPLING_QUARANTINE, quarantine, keys),
        (SAMPLING_FUNNEL, funnel, keys),
        (SAMPLING_STATUS, status, keys),
    ]
    if not result.passed:
        # Prefixes and tool examples of an earlier sample of this day must not outlive its
        # failed re-sample.
        writes.append((CONVERSATION_PREFIXES, CONVERSATION_PREFIXES.frame(), keys))
        writes.append((TOOL_EXAMPLES, TOOL_EXAMPLES.frame(), keys))
    with warehouse.get_connection() as conn:
        # One transaction for all tables: a crash never leaves a sample without its funnel
        # and verdict.
        replace_partitions(conn, writes)
    counts = result.counts
    residue_ms = 1000 * result.residue_seconds / max(counts["sampled"], 1)
    residual_meta = {
        "residual_quarantined": counts["residual_quarantined"],
        "residual_share": round(result.status_row["residual_share"], 4),
        "max_residual_share": result.status_row["max_residual_share"],
        "residual_pii": dg.MetadataValue.json(counts["residual_pii"]),
        "residue_ms_per_conversation": round(residue_ms, 2),
    }
    if not result.passed:
        raise dg.Failure(
            description=f"sampled_conversations {day}: {result.status_row['reason']}",
            metadata={**residual_meta, "sampled": counts["sampled"]},
        )
    context.log.info("sampling %s: %s", day, json.dumps(counts, sort_keys=True))
    return dg.MaterializeResult(
        metadata={
            # Row count and the funnel's counts first, then the residual-PII verdict, then the
            # breakdowns, a preview and how the lines were decided.
            "dagster/row_count": len(sampled),
            "records_in": counts["records_in"],
            "quarantined": counts["quarantined"],
            "eligible": counts["eligible"],
            "sampled": counts["sampled"],
            "kept": counts["kept"],
            **residual_meta,
            "funnel": table_metadata(funnel, columns=["stage", "reason", "n"], max_rows=100),
            "quarantine_reasons": dg.MetadataValue.json(counts["quarantine_reasons"]),
            "ineligible": dg.MetadataValue.json(counts["ineligible"]),
            "pii_replaced": dg.MetadataValue.json(counts["pii_replaced"]),
            **({"strata": dg.MetadataValue.json(counts["strata"])} if "strata" in counts else {}),
            "preview": table_metadata(
                sampled,
                columns=[
                    "conversation_id",
                    "source",
                    "n_messages",
                    "has_tool_calls",
                    "pii_counts_json",
                ],
                max_rows=10,
            ),
            # How the day's lines were decided: by DuckDB, or (those lines, files) by Python.
            "sampling_engine": result.engine.get("engine", ""),
            "python_decided_lines": result.engine.get("python_lines", 0),
            "python_read_files": result.engine.get("python_files", 0),
            "dagster/column_schema": SAMPLED_CONVERSATIONS.column_schema(),
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
    included; it is what every candidate regenerates the final reply from. Refuses (fails
    naming the day and the reason) a day whose sampling has no recorded status or did not
    pass, however it is launched: the residual-PII verdict is read from ``sampling_status``,
    not from the run that happens to be executing.
    """
    day = context.partition_key
    keys = {"traffic_date": day}
    with warehouse.get_connection() as conn:
        refusal = prefixes_refusal(conn, day)
        if refusal is not None:
            raise dg.Failure(description=refusal)
        sampled = read_partition(conn, SAMPLED_CONVERSATIONS, keys)
        rows = prefix_rows_from_sampled(sampled.to_dict("records"))
        prefixes = CONVERSATION_PREFIXES.frame(rows)
        replace_partitions(conn, [(CONVERSATION_PREFIXES, prefixes, keys)])
    if prefixes.empty:
        context.log.warning(f"no sampled conversations for {day}: run sampled_conversations")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(prefixes),
            "dagster/column_schema": CONVERSATION_PREFIXES.column_schema(),
            "mean_prefix_messages": rounded(float(prefixes["n_prefix_messages"].mean()))
            if len(prefixes)
            else 0.0,
            "preview": table_metadata(
                prefixes,
                columns=["conversation_id", "n_prefix_messages", "original_reply"],
                max_rows=10,
            ),
        }
    )


def sampling_status(conn: duckdb.DuckDBPyConnection, day: str) -> dict | None:
    """The recorded ``sampling_status`` row of ``day``, or None when it was never sampled so."""
    rows = read_partition(conn, SAMPLING_STATUS, {"traffic_date": day})
    return rows.iloc[0].to_dict() if len(rows) else None


def prefixes_refusal(conn: duckdb.DuckDBPyConnection, day: str) -> str | None:
    """Why ``conversation_prefixes`` must not be built for ``day`` (one line), or None."""
    status = sampling_status(conn, day)
    if status is None:
        return (
            f"conversation_prefixes refuses {day}: no sampling status recorded for the day "
            "(materialize sampled_conversations for it first, e.g. depsim sample --date "
            f"{day})"
        )
    if not status["passed"]:
        return f"conversation_prefixes refuses {day}: sampling did not pass: {status['reason']}"
    return None


@dg.asset_check(
    asset=sampled_conversations,
    partitions_def=traffic_date,
    blocking=True,
    description="The day's residual-PII verdict: passes when the share of sampled "
    "conversations quarantined for residual PII is within the threshold.",
)
def no_residual_pii(
    context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource
) -> dg.AssetCheckResult:
    """Reads the verdict recorded by ``sampled_conversations`` (``sampling_status``).

    Residual PII is scanned for before anything is written (``traffic/residue.py``, a layer
    independent of the de-identifier); hits are quarantined per conversation. The check passes
    when the day passed (quarantined share within ``DEPSIM_MAX_RESIDUAL_SHARE``) and the rows
    in ``sampled_conversations`` are exactly those the verdict kept.
    """
    with warehouse.get_connection() as conn:
        return residual_pii_result(conn, context.partition_key)


def residual_pii_result(conn: duckdb.DuckDBPyConnection, day: str) -> dg.AssetCheckResult:
    """The residual-PII check's result for one day, from its recorded status."""
    status = sampling_status(conn, day)
    keys = {"traffic_date": day}
    rows = len(read_partition(conn, SAMPLED_CONVERSATIONS, keys))
    if status is None:
        return dg.AssetCheckResult(
            passed=False,
            description=f"{day}: no sampling status recorded; re-run sampled_conversations",
            metadata={"rows": rows},
        )
    quarantine = read_partition(conn, SAMPLING_QUARANTINE, keys)
    residual = quarantine[quarantine["reason"] == RESIDUAL_PII]
    where = [
        {"source_file": r["source_file"], "line_number": int(r["line_number"]),
         "where": r["detail"]}
        for _, r in residual.head(10).iterrows()
    ]
    consistent = rows == int(status["kept"]) if status["passed"] else rows == 0
    return dg.AssetCheckResult(
        passed=bool(status["passed"]) and consistent,
        description=status["reason"]
        if consistent
        else f"{day}: {rows} rows in sampled_conversations, the verdict kept {status['kept']}",
        metadata={
            "sampled": int(status["sampled"]),
            "kept": int(status["kept"]),
            "residual_quarantined": int(status["residual_quarantined"]),
            "residual_share": rounded(float(status["residual_share"])),
            "max_residual_share": rounded(float(status["max_residual_share"])),
            "rows": rows,
            "deid_version": str(status["deid_version"]),
            "residue_version": str(status["residue_version"]),
            "first_quarantined": table_metadata(
                pd.DataFrame(where, columns=pd.Index(["source_file", "line_number", "where"]))
            ),
        },
    )
