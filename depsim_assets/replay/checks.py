"""Asset checks of the replay stage: one reply per prefix x sample, and few failed calls.

Both are blocking: when one fails, ``judge_grades`` and ``behavior_rates`` are not built from
that partition in that run (a rate over a partial or mostly failed replay describes the
prompts that happened to return). Thresholds come from check config, else an environment
variable, else a default:

- ``candidate_completions_complete``: a prefix without exactly one reply per sample index.
- ``candidate_completions_error_share``: rates over the replies that happened to succeed
  (``DEPSIM_MAX_ERROR_SHARE``, 0.05). A ``step_limit`` turn is not a failure: it is a
  finished row (the candidate kept calling tools past its limit), graded like an ``ok`` one.

The logic of each check is a plain function over DataFrames, testable without Dagster.
"""

from collections import Counter
from collections.abc import Collection

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from depsim_assets.config import env_threshold
from depsim_assets.metadata import rounded, table_metadata
from depsim_assets.partitions import (
    PRODUCTION,
    candidate_by_date,
    partitioned_asset_check,
    split_key,
)
from depsim_assets.registry import RegistryError
from depsim_assets.replay.assets import candidate_completions
from depsim_assets.resources import CandidateRegistry
from depsim_assets.warehouse import CANDIDATE_COMPLETIONS, CONVERSATION_PREFIXES, read_partition

DEFAULT_MAX_ERROR_SHARE = 0.05
# Statuses of a turn that finished (graded); every other status is a failure here.
FINISHED = ("ok", "step_limit")
# Conversation ids listed in a failed check's metadata: enough to find the rows, not a dump.
EXAMPLES = 10


def completeness(
    prefix_ids: Collection[str], completions: pd.DataFrame, samples: int
) -> dict[str, object]:
    """How ``completions`` cover ``prefix_ids`` x ``range(samples)``: missing, duplicated, extra.

    ``extra`` are rows for a conversation that is not among the day's prefixes or a sample
    index outside ``range(samples)``: left over from an older sample or another setting.
    """
    expected = {(cid, k) for cid in prefix_ids for k in range(samples)}
    columns = ("conversation_id", "sample_index")
    rows = [] if completions.empty else zip(*(completions[c] for c in columns), strict=True)
    counts = Counter((cid, int(k)) for cid, k in rows)
    present = set(counts)
    missing = sorted(expected - present)
    extra = sorted(present - expected)
    duplicated = sorted(pair for pair, n in counts.items() if n > 1)
    return {
        "prefixes": len(prefix_ids),
        "samples": samples,
        "expected_rows": len(expected),
        "rows": sum(counts.values()),
        "missing": missing,
        "duplicated": duplicated,
        "extra": extra,
    }


def completeness_result(report: dict) -> dg.AssetCheckResult:
    """The check result of a :func:`completeness` report."""
    problems = {k: report[k] for k in ("missing", "duplicated", "extra")}
    passed = report["prefixes"] > 0 and not any(problems.values())
    if not report["prefixes"]:
        text = "no conversation_prefixes for this day"
    else:
        text = (
            f"{report['rows']} rows for {report['prefixes']} prefixes x {report['samples']} "
            f"samples: {len(problems['missing'])} missing, {len(problems['duplicated'])} "
            f"duplicated, {len(problems['extra'])} not asked for"
        )
    return dg.AssetCheckResult(
        passed=bool(passed),
        description=text,
        metadata={
            "prefixes": report["prefixes"],
            "samples": report["samples"],
            "expected_rows": report["expected_rows"],
            "rows": report["rows"],
            **{k: len(v) for k, v in problems.items()},
            **{
                f"first_{k}": table_metadata(
                    pd.DataFrame(
                        v[:EXAMPLES], columns=pd.Index(["conversation_id", "sample_index"])
                    )
                )
                for k, v in problems.items()
                if v
            },
        },
    )


@partitioned_asset_check(
    asset=candidate_completions,
    name="candidate_completions_complete",
    partitions_def=candidate_by_date,
    blocking=True,
    description=(
        "Fails unless every prefix of the day has exactly one completion per sample index "
        "(the candidate's `samples`): none missing, none duplicated, none left over."
    ),
)
def candidate_completions_complete(
    context: dg.AssetCheckExecutionContext,
    warehouse: DuckDBResource,
    registry: CandidateRegistry,
) -> dg.AssetCheckResult:
    """Blocking: a rate over a partial replay describes the prefixes that happened to return,
    so judge_grades and behavior_rates are not built from it in that run."""
    candidate, day = split_key(context)
    if candidate == PRODUCTION:
        samples = 1  # the original replies: one per prefix
    else:
        try:
            samples = registry.load().get(candidate).samples
        except RegistryError as exc:
            return dg.AssetCheckResult(
                passed=False, description=f"cannot tell how many samples to expect: {exc}"
            )
    with warehouse.get_connection() as conn:
        prefixes = read_partition(conn, CONVERSATION_PREFIXES, {"traffic_date": day})
        completions = read_partition(
            conn, CANDIDATE_COMPLETIONS, {"candidate": candidate, "traffic_date": day}
        )
    report = completeness(set(prefixes["conversation_id"]), completions, samples)
    return completeness_result(report)


class ErrorShareConfig(dg.Config):
    """Threshold of the error-share check (unset: ``$DEPSIM_MAX_ERROR_SHARE``, else 0.05)."""

    max_error_share: float | None = None


def error_share_result(completions: pd.DataFrame, limit: float) -> dg.AssetCheckResult:
    """Passes when at most ``limit`` of the partition's completions are neither ``ok`` nor
    ``step_limit``: failed calls, and requests a budget left ``not_attempted`` (rates over
    the rest would describe a subset of the traffic)."""
    rows = len(completions)
    finished = completions["status"].isin(list(FINISHED)) if rows else None
    errors = completions.loc[~finished] if finished is not None else completions
    share = len(errors) / rows if rows else 0.0
    classes = (
        errors["error"].fillna("unknown").astype(str).str.split(":").str[0].value_counts()
        if len(errors)
        else pd.Series(dtype=int)
    )
    return dg.AssetCheckResult(
        passed=bool(rows and share <= limit),
        description=(
            f"{len(errors)} of {rows} completions failed or not attempted ({share:.1%}); "
            f"threshold {limit:.1%}"
            if rows
            else "no completions in this partition"
        ),
        metadata={
            "completions": rows,
            "errors": len(errors),
            "error_share": rounded(float(share)),
            "max_error_share": rounded(float(limit)),
            "errors_by_class": dg.MetadataValue.json({str(k): int(v) for k, v in classes.items()}),
        },
    )


@partitioned_asset_check(
    asset=candidate_completions,
    name="candidate_completions_error_share",
    partitions_def=candidate_by_date,
    blocking=True,
    description=(
        "Fails a partition whose share of failed calls (status `error`) passes the threshold "
        "(DEPSIM_MAX_ERROR_SHARE, default 0.05)."
    ),
)
def candidate_completions_error_share(
    context: dg.AssetCheckExecutionContext, config: ErrorShareConfig, warehouse: DuckDBResource
) -> dg.AssetCheckResult:
    """Blocking: failed calls become unscored grades, and rates over the rest describe the
    prompts the endpoint happened to answer; grading them would also spend judge calls."""
    candidate, day = split_key(context)
    limit = config.max_error_share
    if limit is None:
        limit = env_threshold("DEPSIM_MAX_ERROR_SHARE", DEFAULT_MAX_ERROR_SHARE)
    with warehouse.get_connection() as conn:
        completions = read_partition(
            conn, CANDIDATE_COMPLETIONS, {"candidate": candidate, "traffic_date": day}
        )
    return error_share_result(completions, limit)
