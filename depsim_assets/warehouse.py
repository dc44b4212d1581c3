"""The warehouse: table layouts and the one way partitions are written.

Every table is declared once here as a :class:`Table`; its DDL and its Dagster
``column_schema`` metadata both come from that declaration, so the two cannot drift.
A partition is written with :func:`replace_partition`: delete its rows and insert the new ones
in ONE transaction, so a crash mid-write leaves the previous rows intact, never half of each.
"""

from __future__ import annotations

import errno
import os
import random
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeGuard, cast

import dagster as dg
import duckdb
import pandas as pd

from depsim_assets import config

if TYPE_CHECKING:  # the Postgres backend imports psycopg: only when a URL selects it
    from depsim_assets.warehouse_pg import PgConnection


@dataclass(frozen=True)
class Column:
    """One warehouse column: name, DuckDB type, and what it means."""

    name: str
    type: str
    description: str


@dataclass(frozen=True)
class Table:
    """A warehouse table declared once: columns and the columns that key a partition."""

    name: str
    columns: tuple[Column, ...]
    partition_columns: tuple[str, ...] = ()
    primary_key: tuple[str, ...] = ()

    @property
    def column_names(self) -> list[str]:
        """Column names in declaration order."""
        return [c.name for c in self.columns]

    def frame(self, rows: Iterable[Mapping[str, object] | Sequence[object]] = ()) -> pd.DataFrame:
        """``rows`` (mappings by column name, or sequences in column order) as a frame with
        exactly this table's columns, in order; no rows gives an empty frame."""
        # pd.Index rather than the list: pandas' own SequenceNotStr protocol declares
        # list.index's start/stop as keyword arguments, so type checkers reject a plain list.
        return pd.DataFrame(list(rows), columns=pd.Index(self.column_names))

    def ddl(self) -> str:
        """``CREATE TABLE IF NOT EXISTS`` for this table."""
        cols = ", ".join(f'"{c.name}" {c.type}' for c in self.columns)
        if self.primary_key:
            cols += ", PRIMARY KEY (" + ", ".join(f'"{k}"' for k in self.primary_key) + ")"
        return f"CREATE TABLE IF NOT EXISTS {self.name} ({cols})"

    def column_schema(self) -> dg.TableSchema:
        """The table's columns as Dagster ``dagster/column_schema`` metadata."""
        return dg.TableSchema(
            columns=[
                dg.TableColumn(name=c.name, type=c.type, description=c.description)
                for c in self.columns
            ]
        )


def _cols(*rows: tuple[str, str, str]) -> tuple[Column, ...]:
    return tuple(Column(*r) for r in rows)


SAMPLED_CONVERSATIONS = Table(
    "sampled_conversations",
    _cols(
        ("conversation_id", "VARCHAR", "Conversation id as given in the production log."),
        ("traffic_date", "VARCHAR", "Day of traffic (ISO date), the partition."),
        ("user_hash", "VARCHAR", "Salted hash of the account id; the id itself is dropped."),
        ("source", "VARCHAR", "Traffic source named in the log (e.g. chat, api)."),
        ("production_model", "VARCHAR", "Model that served the conversation in production."),
        ("n_messages", "INTEGER", "Messages in the conversation, final reply included."),
        ("has_tool_calls", "BOOLEAN", "Whether any assistant turn called a tool."),
        ("messages_json", "VARCHAR", "The de-identified conversation, OpenAI chat messages JSON."),
        ("tools_json", "VARCHAR", "Tool schemas the log declared (OpenAI `tools`, JSON list); "
         "NULL when it declared none."),
        ("pii_counts_json", "VARCHAR", "Spans replaced by surrogates, by PII type (JSON)."),
        ("sampling_weight", "DOUBLE", "Eligible conversations of the day per sampled one."),
        ("sample_seed", "BIGINT", "Seed of the uniform sample."),
        ("deid_version", "VARCHAR", "Version of the de-identification rules applied."),
        ("stratum", "VARCHAR", "Stratum of the row when sampling was stratified, else NULL."),
        (
            "surrogate_digests",
            "VARCHAR",
            "SHA-256 prefixes of the surrogates inserted (JSON list), for the residue check.",
        ),
    ),
    ("traffic_date",),
)

SAMPLING_QUARANTINE = Table(
    "sampling_quarantine",
    _cols(
        ("traffic_date", "VARCHAR", "Day of traffic (ISO date), the partition."),
        ("source_file", "VARCHAR", "Log file the record came from, relative to the log root."),
        ("line_number", "BIGINT", "1-based line of the record in that file."),
        ("reason", "VARCHAR", "Reason code: why the record cannot be used."),
        ("detail", "VARCHAR", "Short explanation; never contains the record's text."),
    ),
    ("traffic_date",),
)

SAMPLING_FUNNEL = Table(
    "sampling_funnel",
    _cols(
        ("traffic_date", "VARCHAR", "Day of traffic (ISO date), the partition."),
        (
            "stage",
            "VARCHAR",
            "records_in, quarantined, ineligible, eligible, sampled, residual_quarantined or kept.",
        ),
        ("reason", "VARCHAR", "Reason code for quarantined/ineligible rows, else empty."),
        ("n", "BIGINT", "Records at this stage for this reason."),
    ),
    ("traffic_date",),
)

SAMPLING_STATUS = Table(
    "sampling_status",
    _cols(
        ("traffic_date", "VARCHAR", "Day of traffic (ISO date), the partition."),
        ("passed", "BOOLEAN", "Whether the day's sample may be used (prefixes refuse it if not)."),
        ("sampled", "BIGINT", "Conversations drawn in the sample."),
        ("kept", "BIGINT", "Conversations written to sampled_conversations."),
        ("residual_quarantined", "BIGINT", "Drawn conversations quarantined for residual PII."),
        ("residual_share", "DOUBLE", "residual_quarantined / sampled."),
        ("max_residual_share", "DOUBLE", "Threshold: the day fails above this share."),
        ("reason", "VARCHAR", "One line: why the day passed or failed."),
        ("deid_version", "VARCHAR", "De-identification rules applied."),
        ("residue_version", "VARCHAR", "Residual-PII scan rules applied."),
    ),
    ("traffic_date",),
)

CONVERSATION_PREFIXES = Table(
    "conversation_prefixes",
    _cols(
        ("conversation_id", "VARCHAR", "Conversation id as given in the production log."),
        ("traffic_date", "VARCHAR", "Day of traffic (ISO date), the partition."),
        ("prefix_json", "VARCHAR", "Every message before the final assistant turn (JSON)."),
        ("n_prefix_messages", "INTEGER", "Messages in the prefix."),
        ("prefix_hash", "VARCHAR", "SHA-256 of the prefix JSON: identifies the fixed context."),
        ("original_reply", "VARCHAR", "The production model's final reply (de-identified)."),
        ("production_model", "VARCHAR", "Model that wrote the original reply."),
        ("tools_json", "VARCHAR", "Tool schemas the conversation declared (JSON list), sent "
         "with the prefix; NULL when none."),
    ),
    ("traffic_date",),
)

CANDIDATE_COMPLETIONS = Table(
    "candidate_completions",
    _cols(
        ("completion_id", "VARCHAR", "Hash of candidate, date, conversation and sample index."),
        ("candidate", "VARCHAR", "Candidate name (partition); 'production' = original replies."),
        ("traffic_date", "VARCHAR", "Day of traffic (ISO date), the partition."),
        ("conversation_id", "VARCHAR", "Conversation id as given in the production log."),
        ("sample_index", "INTEGER", "k-th sample of the same prefix (0-based)."),
        ("reply", "VARCHAR", "The regenerated final reply; NULL when the call failed."),
        ("reasoning", "VARCHAR", "Reasoning text when the endpoint returns it, else NULL."),
        ("tool_trace", "VARCHAR", "Tool calls made while producing the reply, each with the "
         "result the candidate was shown and its source (JSON list; depsim_assets.toolsim)."),
        ("status", "VARCHAR", "ok, error, not_attempted (the run's budget was reached), or "
         "step_limit (the turn hit its tool-call or token limit before a final reply)."),
        ("error", "VARCHAR", "Error class and message when status is not ok."),
        ("endpoint", "VARCHAR", "Endpoint base URL (credentials stripped), or 'sim'."),
        ("model", "VARCHAR", "Model name sent to the endpoint."),
        ("params_json", "VARCHAR", "Generation parameters sent (JSON)."),
        ("prompt_tokens", "BIGINT", "Input tokens reported by the endpoint."),
        ("completion_tokens", "BIGINT", "Output tokens reported by the endpoint."),
        ("latency_ms", "DOUBLE", "Wall time of the call in milliseconds."),
        ("cost_usd", "DOUBLE", "Token cost at the registry's prices (0 when none are set)."),
        ("attempts", "INTEGER", "Calls made for this row in the run that answered it (retries "
         "included; 0 when none was made)."),
        ("steps", "INTEGER", "Candidate calls in the turn (1 without tools; each tool round "
         "adds one)."),
        ("tool_calls", "INTEGER", "Tool calls the candidate made in the turn."),
    ),
    ("candidate", "traffic_date"),
)

JUDGE_GRADES = Table(
    "judge_grades",
    _cols(
        ("grade_id", "VARCHAR", "Hash of completion id and category."),
        ("completion_id", "VARCHAR", "The graded completion."),
        ("candidate", "VARCHAR", "Candidate name (partition)."),
        ("traffic_date", "VARCHAR", "Day of traffic (ISO date), the partition."),
        ("conversation_id", "VARCHAR", "Conversation id as given in the production log."),
        ("sample_index", "INTEGER", "k-th sample of the same prefix."),
        ("category", "VARCHAR", "Taxonomy category id."),
        ("family", "VARCHAR", "disallowed_content or misalignment."),
        ("severity", "INTEGER", "0-4 per the category's severity guide; NULL when unscored."),
        ("flagged", "BOOLEAN", "severity >= flag_threshold; NULL when unscored."),
        ("evidence", "VARCHAR", "Quoted span of the reply supporting the severity."),
        (
            "evidence_verified",
            "BOOLEAN",
            "Evidence found verbatim (whitespace-collapsed) in the reply, reasoning or tool "
            "trace; false = a flag kept but not grounded; NULL for severity 0 or unscored.",
        ),
        (
            "evidence_source",
            "VARCHAR",
            "Where the evidence was found: reply, reasoning or tool_trace; NULL if not found.",
        ),
        ("rationale", "VARCHAR", "One-sentence reason from the judge."),
        ("other_concern", "VARCHAR", "Free-text concern outside the taxonomy, if any."),
        ("status", "VARCHAR", "scored or unscored; unscored rows never count as clean."),
        ("unscored_reason", "VARCHAR", "Why the reply has no grade (failed call, bad output...)."),
        ("flag_threshold", "INTEGER", "Severity at or above which a grade is flagged."),
        (
            "judge_votes",
            "INTEGER",
            "Judge calls combined into this grade (k of the k-judge majority; 1 by default).",
        ),
        (
            "judge_agreement",
            "DOUBLE",
            "Share of the k judges whose flag matches the majority flag; NULL when unscored.",
        ),
        (
            "monitor",
            "VARCHAR",
            "Monitor that graded the category: all, a family name, or the category id.",
        ),
        (
            "judge_layout",
            "VARCHAR",
            "How the categories were split into judge calls: all, family or behaviour; NULL "
            "when no call was made.",
        ),
        (
            "structured_output",
            "VARCHAR",
            "How the verdict's JSON shape was asked for: json_schema, json_object or prompt.",
        ),
        ("taxonomy_version", "VARCHAR", "Content hash of the taxonomy used."),
        ("judge_prompt_version", "VARCHAR", "Content hash of the judge prompt template."),
        ("judge_model", "VARCHAR", "Judge model name."),
        ("judge_endpoint", "VARCHAR", "Judge endpoint base URL (credentials stripped), or 'sim'."),
    ),
    ("candidate", "traffic_date"),
)

BEHAVIOR_RATES = Table(
    "behavior_rates",
    _cols(
        ("candidate", "VARCHAR", "Candidate name (partition)."),
        ("traffic_date", "VARCHAR", "Day of traffic (ISO date), the partition."),
        ("category", "VARCHAR", "Taxonomy category id."),
        ("family", "VARCHAR", "disallowed_content or misalignment."),
        ("n_replies", "BIGINT", "Replies in the partition (graded + unscored)."),
        ("graded", "BIGINT", "Replies with a valid grade for this category."),
        ("flagged", "BIGINT", "Graded replies flagged for this category."),
        ("unscored", "BIGINT", "Replies without a valid grade; excluded from the rate."),
        ("rate_per_100k", "DOUBLE", "flagged / graded x 100,000."),
        ("ci_low_per_100k", "DOUBLE", "Lower Jeffreys interval bound per 100k."),
        ("ci_high_per_100k", "DOUBLE", "Upper Jeffreys interval bound per 100k."),
        ("ci_level", "DOUBLE", "Interval level (e.g. 0.95)."),
        ("flag_threshold", "INTEGER", "Severity threshold the flags used."),
        ("severity_0", "BIGINT", "Graded replies at severity 0 for this category."),
        ("severity_1", "BIGINT", "Graded replies at severity 1."),
        ("severity_2", "BIGINT", "Graded replies at severity 2."),
        ("severity_3", "BIGINT", "Graded replies at severity 3."),
        ("severity_4", "BIGINT", "Graded replies at severity 4."),
        ("taxonomy_version", "VARCHAR", "Taxonomy version of every grade counted."),
        ("judge_prompt_version", "VARCHAR", "Judge prompt version of every grade counted."),
    ),
    ("candidate", "traffic_date"),
)

CANDIDATE_COMPARISON = Table(
    "candidate_comparison",
    _cols(
        ("candidate", "VARCHAR", "Candidate compared with the baseline."),
        ("baseline", "VARCHAR", "Baseline candidate (the production model, resampled)."),
        ("category", "VARCHAR", "Taxonomy category id."),
        ("family", "VARCHAR", "disallowed_content or misalignment."),
        ("dates", "VARCHAR", "Comma-separated traffic dates pooled."),
        ("n_paired", "BIGINT", "Prefixes graded for both candidate and baseline."),
        ("n_graded", "BIGINT", "Candidate replies graded on the shared prefixes."),
        ("n_flagged", "BIGINT", "Candidate replies flagged."),
        ("rate_per_100k", "DOUBLE", "Candidate rate per 100k."),
        ("ci_low_per_100k", "DOUBLE", "Lower Jeffreys bound per 100k (effective counts, k > 1)."),
        ("ci_high_per_100k", "DOUBLE", "Upper Jeffreys bound per 100k (effective counts, k > 1)."),
        ("baseline_n_graded", "BIGINT", "Baseline replies graded on the shared prefixes."),
        ("baseline_n_flagged", "BIGINT", "Baseline replies flagged."),
        ("baseline_rate_per_100k", "DOUBLE", "Baseline rate per 100k."),
        ("rate_ratio", "DOUBLE", "Candidate rate / baseline rate (0.5 added to zero counts)."),
        ("ci_low_ratio", "DOUBLE", "Lower bound of the ratio's log-scale interval."),
        ("ci_high_ratio", "DOUBLE", "Upper bound of the ratio's log-scale interval."),
        ("p_value", "DOUBLE",
         "Two-sided p: Fisher exact with one sample per prefix; prefix-clustered score test when "
         "samples > 1."),
        ("alpha", "DOUBLE", "Significance level used."),
        ("significant", "BOOLEAN", "p_value < alpha."),
        (
            "change",
            "VARCHAR",
            "up / down when significant and ratio >= 1.5x either way, else none.",
        ),
        ("taxonomy_version", "VARCHAR", "Taxonomy version of the grades compared."),
        ("n_discordant_up", "BIGINT", "Prefixes (sample 0) flagged for the candidate only."),
        ("n_discordant_down", "BIGINT", "Prefixes (sample 0) flagged for the baseline only."),
        ("p_mcnemar", "DOUBLE", "Two-sided exact McNemar p on the discordant pairs."),
        ("q_value", "DOUBLE", "Benjamini-Hochberg q of p_value across the candidate's categories."),
        ("multiple_testing", "VARCHAR", "none (p decides) or bh (q_value decides)."),
        ("ci_level", "DOUBLE", "Level of the rate and ratio intervals."),
        (
            "fidelity_error",
            "DOUBLE",
            "Only on 'production' rows: max(sim/realised, realised/sim) of the smoothed rates.",
        ),
    ),
)

# Written by the candidate_comparison asset in the same transaction as that table: the same
# comparison one day at a time (the trend a release reviewer reads).
CANDIDATE_COMPARISON_BY_DAY = Table(
    "candidate_comparison_by_day",
    _cols(
        ("candidate", "VARCHAR", "Candidate compared with the baseline."),
        ("baseline", "VARCHAR", "Baseline candidate."),
        ("traffic_date", "VARCHAR", "The day compared (YYYY-MM-DD)."),
        ("category", "VARCHAR", "Taxonomy category id."),
        ("family", "VARCHAR", "disallowed_content or misalignment."),
        ("n_paired", "BIGINT", "Prefixes of the day graded for both candidate and baseline."),
        ("n_graded", "BIGINT", "Candidate replies graded on the shared prefixes."),
        ("n_flagged", "BIGINT", "Candidate replies flagged."),
        ("rate_per_100k", "DOUBLE", "Candidate rate per 100k."),
        ("ci_low_per_100k", "DOUBLE", "Lower bound of the candidate rate's interval."),
        ("ci_high_per_100k", "DOUBLE", "Upper bound of the candidate rate's interval."),
        ("baseline_n_graded", "BIGINT", "Baseline replies graded on the shared prefixes."),
        ("baseline_n_flagged", "BIGINT", "Baseline replies flagged."),
        ("baseline_rate_per_100k", "DOUBLE", "Baseline rate per 100k."),
        ("baseline_ci_low_per_100k", "DOUBLE", "Lower bound of the baseline rate's interval."),
        ("baseline_ci_high_per_100k", "DOUBLE", "Upper bound of the baseline rate's interval."),
        ("rate_ratio", "DOUBLE", "Candidate rate / baseline rate (0.5 added to zero counts)."),
        ("ci_low_ratio", "DOUBLE", "Lower bound of the ratio's log-scale interval."),
        ("ci_high_ratio", "DOUBLE", "Upper bound of the ratio's log-scale interval."),
        ("p_value", "DOUBLE", "Two-sided p of the day alone (for looking; no change is called)."),
        ("ci_level", "DOUBLE", "Level of the rate and ratio intervals."),
        ("taxonomy_version", "VARCHAR", "Taxonomy version of the grades compared."),
    ),
)

FORECAST_VALIDATION = Table(
    "forecast_validation",
    _cols(
        ("candidate", "VARCHAR", "A candidate with deployed_on days in the registry."),
        ("category", "VARCHAR", "Taxonomy category id ('_summary' = across categories)."),
        ("family", "VARCHAR", "disallowed_content or misalignment."),
        ("prediction_dates", "VARCHAR", "Days simulated before release (the prediction)."),
        ("deployed_dates", "VARCHAR", "Days it served production (the realised rates)."),
        ("predicted_graded", "BIGINT", "Simulated replies graded before release."),
        ("predicted_flagged", "BIGINT", "Simulated replies flagged."),
        ("predicted_per_100k", "DOUBLE", "Predicted rate per 100k (flagged / graded)."),
        ("realised_graded", "BIGINT", "Production replies graded on the deployed days."),
        ("realised_flagged", "BIGINT", "Production replies flagged on the deployed days."),
        ("realised_per_100k", "DOUBLE", "Realised rate per 100k."),
        ("previous_graded", "BIGINT", "Production replies graded before release."),
        ("previous_flagged", "BIGINT", "Production replies flagged before release."),
        ("previous_per_100k", "DOUBLE", "Realised rate of the previous production model."),
        (
            "multiplicative_error",
            "DOUBLE",
            "max(pred/real, real/pred) of Jeffreys-smoothed rates; the summary row: median.",
        ),
        ("realised_change", "DOUBLE", "Smoothed realised / previous rate."),
        (
            "predicted_direction",
            "VARCHAR",
            "up / down: simulated vs the baseline simulated on the same days.",
        ),
        ("realised_direction", "VARCHAR", "up / down: realised vs the previous rate."),
        (
            "direction_scored",
            "BOOLEAN",
            "Realised changed >= 1.5x either way, so the direction call counts.",
        ),
        (
            "direction_correct",
            "DOUBLE",
            "1/0 when scored, else NULL; the summary row: share correct of those scored.",
        ),
        ("realised_change_p", "DOUBLE", "Fisher p of realised vs previous counts."),
        (
            "direction_correct_significant",
            "DOUBLE",
            "As direction_correct, only where the realised change is also significant.",
        ),
        (
            "nll",
            "DOUBLE",
            "-log Binomial(realised flagged; realised graded, smoothed predicted rate);"
            " the summary row: the sum.",
        ),
        ("taxonomy_version", "VARCHAR", "Taxonomy version of the grades compared."),
    ),
)

TOOL_EXAMPLES = Table(
    "tool_examples",
    _cols(
        ("traffic_date", "VARCHAR", "Day of traffic (ISO date), the partition."),
        ("conversation_id", "VARCHAR", "Conversation the call was made in."),
        ("call_index", "INTEGER", "Position of the call in its conversation (0-based)."),
        ("tool_name", "VARCHAR", "Name of the tool called."),
        ("arguments", "VARCHAR", "Arguments as the model sent them (de-identified JSON text)."),
        ("result", "VARCHAR", "The real tool's result (de-identified)."),
        ("schema_json", "VARCHAR", "The tool's declared schema (JSON), NULL when none."),
    ),
    ("traffic_date",),
)

TOOL_REALISM = Table(
    "tool_realism",
    _cols(
        ("traffic_date", "VARCHAR", "Day of traffic (ISO date), the partition."),
        ("tool_name", "VARCHAR", "Tool, or 'overall' for every tool together."),
        ("pairs", "BIGINT", "Real/simulated pairs shown to the discriminator."),
        ("judged_real", "BIGINT", "Pairs where the simulated result was picked as the real one."),
        ("unscored", "BIGINT", "Pairs with no usable verdict (failed call or no A/B answer)."),
        ("judged_real_share", "DOUBLE", "judged_real / scored pairs (0.5 = indistinguishable)."),
        ("share_low", "DOUBLE", "Lower bound of the share's Jeffreys interval."),
        ("share_high", "DOUBLE", "Upper bound of the share's Jeffreys interval."),
        ("simulator", "VARCHAR", "Tool simulator endpoint and model."),
        ("discriminator", "VARCHAR", "Discriminator endpoint and model."),
    ),
    ("traffic_date",),
)

MODEL_CALLS = Table(
    "model_calls",
    _cols(
        ("request_key", "VARCHAR", "SHA-256 of endpoint, model, params, messages, sample index."),
        (
            "kind",
            "VARCHAR",
            "What the call was for: replay, judge, tool_sim, discriminator, or capability (a "
            "mode an endpoint took).",
        ),
        ("endpoint", "VARCHAR", "Endpoint base URL (credentials stripped), or 'sim'."),
        ("model", "VARCHAR", "Model name sent."),
        ("status", "VARCHAR", "ok: a cache hit for any later identical request; error: retried."),
        ("payload_json", "VARCHAR", "The outcome (reply, reasoning, tool trace, error) as JSON."),
        ("prompt_tokens", "BIGINT", "Input tokens reported by the endpoint."),
        ("completion_tokens", "BIGINT", "Output tokens reported by the endpoint."),
        ("answered_at", "TIMESTAMP", "When the response arrived (UTC)."),
    ),
    primary_key=("request_key",),
)

MODEL_BATCHES = Table(
    "model_batches",
    _cols(
        ("batch_id", "VARCHAR", "Batch id given by the endpoint (Batch API)."),
        ("endpoint", "VARCHAR", "Endpoint base URL (credentials stripped), or 'sim'."),
        ("model", "VARCHAR", "Model name sent."),
        ("partition_key", "VARCHAR", "Dagster partition the batch was submitted for."),
        ("input_hash", "VARCHAR", "SHA-256 of the uploaded JSONL: same pending requests."),
        ("n_requests", "BIGINT", "Requests (lines) in the batch."),
        ("input_file_id", "VARCHAR", "Uploaded input file id."),
        ("status", "VARCHAR", "Last status seen (in_progress, completed, failed, ...)."),
        ("output_file_id", "VARCHAR", "Output file id once the batch finished, else NULL."),
        ("error_file_id", "VARCHAR", "Error file id when some lines failed, else NULL."),
        ("created_at", "TIMESTAMP", "When the batch was submitted (UTC)."),
        ("updated_at", "TIMESTAMP", "When its status was last polled (UTC)."),
        ("collected_at", "TIMESTAMP", "When its results were stored; NULL: a rerun resumes it."),
    ),
    primary_key=("batch_id",),
)

JUDGE_AGREEMENT = Table(
    "judge_agreement",
    _cols(
        ("candidate", "VARCHAR", "Whose replies were labelled ('production' = original replies)."),
        ("category", "VARCHAR", "Taxonomy category id or 'any' (flagged on any); 'overall' = all."),
        ("n", "BIGINT", "Labels matched to a scored judge grade."),
        ("n_unmatched", "BIGINT", "Labels with no scored grade of that conversation's reply."),
        ("prevalence", "DOUBLE", "Share of matched labels that are 1 (human positives)."),
        ("judge_positive_rate", "DOUBLE", "Share of matched replies the judge flagged."),
        ("precision", "DOUBLE", "Judge flags that humans labelled 1; NULL with no judge flag."),
        ("precision_low", "DOUBLE", "2.5% bootstrap percentile of precision."),
        ("precision_high", "DOUBLE", "97.5% bootstrap percentile of precision."),
        ("recall", "DOUBLE", "Human positives the judge flagged; NULL with no positive label."),
        ("recall_low", "DOUBLE", "2.5% bootstrap percentile of recall."),
        ("recall_high", "DOUBLE", "97.5% bootstrap percentile of recall."),
        ("kappa", "DOUBLE", "Cohen's kappa of judge flag vs human label."),
        ("kappa_low", "DOUBLE", "2.5% bootstrap percentile of kappa."),
        ("kappa_high", "DOUBLE", "97.5% bootstrap percentile of kappa."),
        ("bootstrap_reps", "INTEGER", "Bootstrap resamples (of label rows) behind the bounds."),
        ("flag_threshold", "INTEGER", "Severity at or above which the judge flag counts."),
        ("taxonomy_version", "VARCHAR", "Taxonomy version of the grades compared."),
        ("labels_file", "VARCHAR", "The labels file read (path)."),
    ),
)

NOVEL_BEHAVIORS = Table(
    "novel_behaviors",
    _cols(
        ("cluster_id", "INTEGER", "Cluster number, largest cluster first."),
        ("candidate", "VARCHAR", "Candidate whose replies fall in the cluster."),
        ("n", "BIGINT", "Texts of this candidate in the cluster."),
        ("cluster_size", "BIGINT", "Texts in the cluster over every candidate."),
        ("top_terms", "VARCHAR", "Highest-weight TF-IDF terms of the cluster, comma-separated."),
        ("examples_json", "VARCHAR", "Up to three example texts of the cluster (JSON list)."),
        ("source", "VARCHAR", "other_concern, low_fit_rationale, or both."),
        ("dates", "VARCHAR", "Comma-separated traffic dates the texts come from."),
        ("taxonomy_version", "VARCHAR", "Taxonomy version(s) of the grades read."),
    ),
)

ALL_TABLES = (
    SAMPLED_CONVERSATIONS,
    SAMPLING_QUARANTINE,
    SAMPLING_FUNNEL,
    SAMPLING_STATUS,
    CONVERSATION_PREFIXES,
    CANDIDATE_COMPLETIONS,
    JUDGE_GRADES,
    BEHAVIOR_RATES,
    CANDIDATE_COMPARISON,
    CANDIDATE_COMPARISON_BY_DAY,
    FORECAST_VALIDATION,
    TOOL_EXAMPLES,
    TOOL_REALISM,
    MODEL_CALLS,
    MODEL_BATCHES,
    JUDGE_AGREEMENT,
    NOVEL_BEHAVIORS,
)


def is_postgres(conn: object) -> TypeGuard[PgConnection]:
    """Whether ``conn`` is the Postgres backend's (``warehouse_pg.PgConnection``)."""
    return getattr(conn, "dialect", "duckdb") == "postgres"


def dialect(conn: object) -> str:
    """``duckdb`` or ``postgres``: which SQL dialect ``conn`` speaks (for the few statements
    the two spell differently)."""
    return "postgres" if is_postgres(conn) else "duckdb"


def ensure_tables(conn: duckdb.DuckDBPyConnection | PgConnection) -> None:
    """Create every warehouse table that does not exist yet."""
    if is_postgres(conn):
        from depsim_assets import warehouse_pg

        warehouse_pg.ensure_tables(conn)
        return
    for table in ALL_TABLES:
        conn.execute(table.ddl())
    # A warehouse made by an older depsim lacks columns added since: add them (NULL in old
    # rows) so INSERT ... BY NAME keeps working instead of failing on the first new column.
    have = set(
        conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema()"
        ).fetchall()
    )
    for table in ALL_TABLES:
        for col in table.columns:
            if (table.name, col.name) not in have:
                conn.execute(f'ALTER TABLE {table.name} ADD COLUMN "{col.name}" {col.type}')


def _check_frame(table: Table, frame: pd.DataFrame, keys: Mapping[str, str]) -> None:
    unknown = set(keys) - set(table.partition_columns)
    if unknown:
        raise ValueError(f"{table.name}: {sorted(unknown)} are not partition columns")
    missing = [c for c in table.column_names if c not in frame.columns]
    extra = [c for c in frame.columns if c not in table.column_names]
    if missing or extra:
        raise ValueError(f"{table.name}: frame columns differ (missing {missing}, extra {extra})")


def _where(keys: Mapping[str, str]) -> str:
    return " AND ".join(f'"{k}" = ?' for k in keys) or "TRUE"


def replace_partitions(
    conn: duckdb.DuckDBPyConnection | PgConnection,
    writes: Sequence[tuple[Table, pd.DataFrame, Mapping[str, str]]],
) -> dict[str, int]:
    """Replace one partition in each of several tables, all in ONE transaction.

    Each write is ``(table, frame, keys)``; ``keys`` maps partition columns to values (empty:
    the whole table). Deletes and inserts commit together, so a failure leaves every old
    partition whole; columns are matched by name and values travel only as bound parameters.
    Returns rows written per table.
    """
    for table, frame, keys in writes:
        _check_frame(table, frame, keys)
    if is_postgres(conn):
        _replace_postgres(conn, writes)
        return {table.name: len(frame) for table, frame, _ in writes}
    conn = cast(duckdb.DuckDBPyConnection, conn)  # not Postgres: the DuckDB file's
    views = []
    try:
        ensure_tables(conn)
        conn.execute("BEGIN TRANSACTION")
        for table, frame, keys in writes:
            view = f"_incoming_{table.name}"
            conn.register(view, frame[table.column_names])
            views.append(view)
            conn.execute(f"DELETE FROM {table.name} WHERE {_where(keys)}", list(keys.values()))
            conn.execute(f"INSERT INTO {table.name} BY NAME SELECT * FROM {view}")
        conn.execute("COMMIT")
    except BaseException as exc:
        # A failed COMMIT has already rolled back, and ROLLBACK then fails with "no
        # transaction is active", which used to hide the real cause (a full disk); a failed
        # statement leaves an unfinished result that must be abandoned first.
        with suppress(duckdb.Error, AttributeError):
            conn.abort()
        with suppress(duckdb.Error):
            conn.execute("ROLLBACK")
        translated = translate_write_error(exc, _database_path(conn), _what(writes))
        if translated is not None:
            raise translated from exc
        raise
    finally:
        for view in views:
            with suppress(duckdb.Error):
                conn.unregister(view)
    return {table.name: len(frame) for table, frame, _ in writes}


def _replace_postgres(
    conn: PgConnection, writes: Sequence[tuple[Table, pd.DataFrame, Mapping[str, str]]]
) -> None:
    from psycopg import errors as pg_errors

    from depsim_assets import warehouse_pg

    try:
        warehouse_pg.replace_partitions(conn, writes)
    except pg_errors.DiskFull as exc:
        where = warehouse_pg.display_url(conn.url)
        raise WarehouseWriteError(
            f"the warehouse database's disk is full writing {where}: nothing of "
            f"{_what(writes)} was written"
        ) from exc


class WarehouseWriteError(RuntimeError):
    """The warehouse could not be written for a reason outside depsim (disk full, read-only);
    the message says which, where, and that nothing of the partition was written."""


# DuckDB reports OS write failures as text ('Could not write file "...": No space left on
# device'), without an errno: the OS's own wording is matched, per error.
_WRITE_FAILURES = (
    (os.strerror(errno.ENOSPC), "the warehouse disk is full"),
    (os.strerror(errno.EDQUOT), "the warehouse disk quota is exhausted"),
    (os.strerror(errno.EFBIG), "the warehouse file hit the file size limit"),
    (os.strerror(errno.EROFS), "the warehouse is on a read-only file system"),
    (os.strerror(errno.EACCES), "the warehouse file or folder is not writable"),
)
_QUOTED_PATH = re.compile(r'"([^"]+)"')


def translate_write_error(
    exc: BaseException, database: str | None, what: str
) -> WarehouseWriteError | None:
    """A one-line WarehouseWriteError for a disk-full or read-only failure, else None.

    ``what`` names the partition (``2026-11-20``), ``database`` the warehouse file.
    """
    if isinstance(exc, OSError) and exc.errno is not None:
        cause = os.strerror(exc.errno)
        where = exc.filename or database
    elif isinstance(exc, duckdb.Error):
        text = str(exc)
        cause = next((c for c, _ in _WRITE_FAILURES if c in text), "")
        quoted = _QUOTED_PATH.search(text)
        where = quoted.group(1) if quoted else database
    else:
        return None
    for wording, headline in _WRITE_FAILURES:
        if cause == wording:
            return WarehouseWriteError(
                f"{headline} ({wording}) writing {where}: nothing of {what} was written"
            )
    return None


def _database_path(conn: duckdb.DuckDBPyConnection) -> str | None:
    try:
        row = conn.execute(
            "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
        ).fetchone()
    except duckdb.Error:
        return None
    return row[0] if row and row[0] else None


def _what(writes: Sequence[tuple[Table, pd.DataFrame, Mapping[str, str]]]) -> str:
    # "sampled_conversations, sampling_funnel for 2026-11-20": the tables and the partition.
    tables = ", ".join(dict.fromkeys(t.name for t, _, _ in writes))
    values = sorted({"|".join(keys.values()) for _, _, keys in writes if keys})
    return f"{tables} for {', '.join(values)}" if values else tables


def replace_partition(
    conn: duckdb.DuckDBPyConnection | PgConnection,
    table: Table,
    frame: pd.DataFrame,
    keys: Mapping[str, str],
) -> int:
    """Replace the rows of one partition of one table (see :func:`replace_partitions`)."""
    return replace_partitions(conn, [(table, frame, keys)])[table.name]


def read_partition(
    conn: duckdb.DuckDBPyConnection | PgConnection, table: Table, keys: Mapping[str, str]
) -> pd.DataFrame:
    """All rows of one partition of ``table`` (an empty frame if the table is new)."""
    ensure_tables(conn)
    sql = f"SELECT * FROM {table.name} WHERE {_where(keys)}"
    return conn.execute(sql, list(keys.values())).df()


def upsert_sql(table: Table, rows: str) -> str:
    """``INSERT`` of ``rows`` (``VALUES (?, ...)`` or a SELECT, in column order) into
    ``table``, replacing a row whose primary key is taken.

    ``ON CONFLICT ... DO UPDATE`` reads the same on DuckDB and Postgres; on Postgres it is
    also safe against a concurrent insert of the same key (one row, no error).
    """
    cols = ", ".join(f'"{c}"' for c in table.column_names)
    keys = ", ".join(f'"{k}"' for k in table.primary_key)
    sets = ", ".join(
        f'"{c}" = excluded."{c}"' for c in table.column_names if c not in table.primary_key
    )
    return f"INSERT INTO {table.name} ({cols}) {rows} ON CONFLICT ({keys}) DO UPDATE SET {sets}"


# ------------------------------------------------------------------------------- connections
# DuckDB lets one process at a time open a file read-write, and a read-only process cannot
# open it while another holds it read-write (the OS file lock is exclusive). Under Dagster's
# multiprocess executor, and with runs in parallel, every step is its own process on the same
# file: each holds a connection for one short read or one write transaction, and opening waits
# its turn here instead of failing on the lock.
LOCK_TIMEOUT_S = 600.0


class WarehouseLockTimeout(RuntimeError):
    """The warehouse file stayed locked by another process for longer than the timeout."""


def is_lock_conflict(exc: BaseException) -> bool:
    """True for DuckDB's "another process holds the file" error (worth waiting out)."""
    text = str(exc)
    return isinstance(exc, duckdb.IOException) and (
        "Could not set lock" in text or "Conflicting lock" in text
    )


def open_connection(
    database: str,
    *,
    read_only: bool = False,
    config: Mapping[str, str | bool | int | float | list[str]] | None = None,
    timeout_s: float = LOCK_TIMEOUT_S,
    max_delay_s: float = 2.0,
) -> duckdb.DuckDBPyConnection:
    """Connect to ``database``, waiting while another process holds its lock.

    Retries only the lock conflict, with jittered exponential backoff (so processes that
    collide do not retry in step) capped at ``max_delay_s`` per wait, for ``timeout_s`` in
    all; then raises :class:`WarehouseLockTimeout` naming the file and the holder. Any other
    error (a corrupt file, a bad path) is raised at once.
    """
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    attempts = 0
    while True:
        attempts += 1
        try:
            return duckdb.connect(database, read_only=read_only, config=dict(config or {}))
        except duckdb.IOException as exc:
            if not is_lock_conflict(exc):
                translated = translate_write_error(exc, database, "the warehouse")
                if translated is not None:
                    raise translated from exc
                raise
            left = deadline - time.monotonic()
            if left <= 0:
                holder = str(exc).split("Conflicting lock is held in", 1)[-1].split(". See")[0]
                raise WarehouseLockTimeout(
                    f"warehouse {database} stayed locked by another process for "
                    f"{timeout_s:.0f}s ({attempts} attempts; holder:{holder}). DuckDB allows one "
                    "writer process per file: stop the process holding it (a notebook, a shell, "
                    "another depsim command) or raise the lock timeout."
                ) from exc
            time.sleep(min(left, random.uniform(0.5, 1.0) * delay))
            delay = min(delay * 2, max_delay_s)


@contextmanager
def connection(
    database: str | Path,
    *,
    read_only: bool = False,
    timeout_s: float = LOCK_TIMEOUT_S,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection held for one block and always closed (lock released) when it ends."""
    conn = open_connection(str(database), read_only=read_only, timeout_s=timeout_s)
    try:
        yield conn
    finally:
        conn.close()


# ------------------------------------------------------------------------------ the backend
# Which warehouse: the DuckDB file (default; config.warehouse_path()) or, when this variable
# holds a postgresql:// URL, that Postgres database. Read when a connection is opened.
URL_ENV = "DEPSIM_WAREHOUSE_URL"


def warehouse_url() -> str | None:
    """The Postgres URL of ``$DEPSIM_WAREHOUSE_URL``; None (the DuckDB file) when unset.

    A value that is not a ``postgresql://`` URL is a one-line ValueError (never echoed: it
    may hold a password).
    """
    url = os.environ.get(URL_ENV, "").strip()
    if not url:
        return None
    from urllib.parse import urlsplit

    if urlsplit(url).scheme not in ("postgresql", "postgres"):
        raise ValueError(
            f"{URL_ENV} must be a postgresql://user@host:port/database URL (or unset for the "
            "DuckDB file)"
        )
    return url


def location() -> str:
    """Where the warehouse is, for people: the file's path, or the URL without password."""
    url = warehouse_url()
    if url is None:
        return str(config.warehouse_path())
    from depsim_assets.warehouse_pg import display_url

    return display_url(url)


def exists() -> bool:
    """Whether there is a warehouse to read: the file exists, or a Postgres URL is set (a
    server that cannot be reached fails on connect with its own one-line error)."""
    return warehouse_url() is not None or config.warehouse_path().exists()


@contextmanager
def postgres_connection(url: str, *, read_only: bool = False) -> Iterator[PgConnection]:
    """A Postgres warehouse connection for one block, always closed when it ends."""
    from depsim_assets.warehouse_pg import PgConnection

    conn = PgConnection(url, read_only=read_only)
    try:
        yield conn
    finally:
        conn.close()


@contextmanager
def configured(
    *, read_only: bool = False, timeout_s: float = LOCK_TIMEOUT_S
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the configured warehouse (``$DEPSIM_WAREHOUSE_URL``, else the file).

    Typed as DuckDB's connection: the Postgres adapter answers the same calls (execute with
    ``?`` parameters, fetchall/fetchone/df, register), which is what callers use.
    """
    url = warehouse_url()
    if url is None:
        with connection(config.warehouse_path(), read_only=read_only, timeout_s=timeout_s) as conn:
            yield conn
        return
    with postgres_connection(url, read_only=read_only) as pg:
        # cast: the adapter presents the subset of DuckDB's API depsim uses (see warehouse_pg).
        yield cast(duckdb.DuckDBPyConnection, pg)
