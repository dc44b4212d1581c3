"""Asset checks that stop a wrong number before it is reported.

Each check runs with the partition of the asset it guards (listed in
``definitions.ASSETS`` beside the assets). The partitioned ones are blocking: when one fails,
the assets downstream of the one it checks are not materialized in that run, so
``judge_grades`` is never built from incomplete replays and ``behavior_rates`` never from
grades of mixed versions. The logic of each check is a plain function over DataFrames, so it
can be tested without Dagster.

Thresholds come from check config, else from an environment variable, else a default:

- ``sampled_conversations_min_size``: too few conversations to estimate anything
  (``DEPSIM_MIN_SAMPLE``, 30).
- ``candidate_completions_complete``: a prefix without exactly one reply per sample index.
- ``candidate_completions_error_share``: rates over the replies that happened to succeed
  (``DEPSIM_MAX_ERROR_SHARE``, 0.05).
- ``judge_grades_single_version``: one rate pooling two taxonomies, prompts or thresholds.
- ``candidate_comparison_coverage``: candidate and baseline compared on different prefixes.

The residual-PII check lives with the traffic assets and the unscored-share check with the
judging assets; both are blocking too.
"""

import warnings
from collections.abc import Callable, Collection

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from depsim_assets.config import env_threshold
from depsim_assets.estimates.assets import candidate_comparison, served_by_others
from depsim_assets.judging.assets import judge_grades
from depsim_assets.metadata import md_table
from depsim_assets.partitions import PRODUCTION, candidate_by_date, split_key, traffic_date
from depsim_assets.registry import RegistryError
from depsim_assets.replay.assets import candidate_completions
from depsim_assets.resources import CandidateRegistry
from depsim_assets.traffic.assets import sampled_conversations
from depsim_assets.warehouse import (
    CANDIDATE_COMPLETIONS,
    CONVERSATION_PREFIXES,
    JUDGE_GRADES,
    SAMPLED_CONVERSATIONS,
    ensure_tables,
    read_partition,
)

DEFAULT_MIN_SAMPLE = 30
DEFAULT_MAX_ERROR_SHARE = 0.05
# Conversation ids listed in a failed check's metadata: enough to find the rows, not a dump.
EXAMPLES = 10


def _asset_check(**kwargs) -> Callable:
    """``dg.asset_check`` without the preview warning partitioned checks raise on import."""

    def wrap(fn: Callable) -> dg.AssetChecksDefinition:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dg.PreviewWarning)
            return dg.asset_check(**kwargs)(fn)

    return wrap


# -- sampled_conversations: enough conversations to estimate from -----------------------------


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


@_asset_check(
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
        (rows,) = conn.execute(
            f"SELECT count(*) FROM {SAMPLED_CONVERSATIONS.name} WHERE traffic_date = ?",
            [context.partition_key],
        ).fetchone()
    return min_sample_result(int(rows), minimum)


# -- candidate_completions: one reply per prefix x sample, few errors ------------------------


def completeness(
    prefix_ids: Collection[str], completions: pd.DataFrame, samples: int
) -> dict[str, object]:
    """How ``completions`` cover ``prefix_ids`` x ``range(samples)``: missing, duplicated, extra.

    ``extra`` are rows for a conversation that is not among the day's prefixes or a sample
    index outside ``range(samples)``: left over from an older sample or another setting.
    """
    expected = {(cid, k) for cid in prefix_ids for k in range(samples)}
    if completions.empty:
        counts = pd.Series(dtype=int)
    else:
        counts = completions.groupby(["conversation_id", "sample_index"]).size()
    present = {(cid, int(k)) for cid, k in counts.index}
    missing = sorted(expected - present)
    extra = sorted(present - expected)
    duplicated = sorted((cid, int(k)) for (cid, k), n in counts.items() if n > 1)
    return {
        "prefixes": len(prefix_ids),
        "samples": samples,
        "expected_rows": len(expected),
        "rows": int(counts.sum()) if len(counts) else 0,
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
                f"first_{k}": dg.MetadataValue.json(
                    [{"conversation_id": c, "sample_index": s} for c, s in v[:EXAMPLES]]
                )
                for k, v in problems.items()
                if v
            },
        },
    )


@_asset_check(
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
    candidate, day = split_key(context)  # type: ignore[arg-type]
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
    """Passes when at most ``limit`` of the partition's completions are not ``ok``: failed
    calls, and requests a budget left ``not_attempted`` (rates over the rest would describe a
    subset of the traffic)."""
    rows = len(completions)
    errors = completions[completions["status"] != "ok"] if rows else completions
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
            "error_share": float(share),
            "max_error_share": float(limit),
            "errors_by_class": dg.MetadataValue.json({str(k): int(v) for k, v in classes.items()}),
        },
    )


@_asset_check(
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
    candidate, day = split_key(context)  # type: ignore[arg-type]
    limit = config.max_error_share
    if limit is None:
        limit = env_threshold("DEPSIM_MAX_ERROR_SHARE", DEFAULT_MAX_ERROR_SHARE)
    with warehouse.get_connection() as conn:
        completions = read_partition(
            conn, CANDIDATE_COMPLETIONS, {"candidate": candidate, "traffic_date": day}
        )
    return error_share_result(completions, limit)


# -- judge_grades: one taxonomy, prompt and threshold per partition --------------------------

VERSION_COLUMNS = ["taxonomy_version", "judge_prompt_version", "flag_threshold"]


def version_result(grades: pd.DataFrame) -> dg.AssetCheckResult:
    """Passes when every grade row of the partition has the same taxonomy version, judge
    prompt version and flag threshold (unscored rows included: they carry them too)."""
    if grades.empty:
        return dg.AssetCheckResult(passed=False, description="no grade rows in this partition")
    found = (
        grades[VERSION_COLUMNS].astype(str).value_counts(dropna=False).rename("rows").reset_index()
    )
    passed = len(found) == 1
    text = " / ".join(str(v) for v in found.iloc[0][VERSION_COLUMNS])
    return dg.AssetCheckResult(
        passed=passed,
        description=(
            f"all {len(grades)} rows under {text}"
            if passed
            else f"{len(found)} taxonomy/prompt/threshold combinations in one partition; "
            "re-materialize judge_grades for it"
        ),
        metadata={
            "versions": len(found),
            "rows_by_version": dg.MetadataValue.md(md_table(found, max_rows=len(found))),
        },
    )


@_asset_check(
    asset=judge_grades,
    name="judge_grades_single_version",
    partitions_def=candidate_by_date,
    blocking=True,
    description=(
        "Fails a partition whose grade rows mix taxonomy versions, judge-prompt versions or "
        "flag thresholds: one rate must never pool them."
    ),
)
def judge_grades_single_version(
    context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource
) -> dg.AssetCheckResult:
    """Blocking: behavior_rates is not built from a mixed partition in that run."""
    candidate, day = split_key(context)  # type: ignore[arg-type]
    with warehouse.get_connection() as conn:
        ensure_tables(conn)
        grades = conn.execute(
            f"SELECT {', '.join(VERSION_COLUMNS)} FROM {JUDGE_GRADES.name} "
            "WHERE candidate = ? AND traffic_date = ?",
            [candidate, day],
        ).df()
    return version_result(grades)


# -- candidate_comparison: both arms on the same prefixes -------------------------------------


def coverage_table(
    graded: pd.DataFrame, baseline: str, skip_production_dates: Collection[str] = ()
) -> pd.DataFrame:
    """One row per compared candidate x day: prefixes graded for it, for the baseline, and
    how many only one side has.

    ``graded`` holds distinct ``(candidate, traffic_date, conversation_id)`` of the grades.
    A day the baseline was graded and the candidate was not is not a gap (the candidate was
    not replayed that day); a day the candidate has and the baseline lacks is: the comparison
    silently leaves it out. ``production`` is not compared on ``skip_production_dates``
    (days another model served production), so they are skipped here too.
    """
    columns = [
        "candidate",
        "traffic_date",
        "prefixes",
        "baseline_prefixes",
        "only_candidate",
        "only_baseline",
        "covered",
    ]
    base = graded[graded["candidate"] == baseline]
    base_sets = base.groupby("traffic_date")["conversation_id"].agg(set).to_dict()
    rows = []
    others = graded[graded["candidate"] != baseline]
    for (name, day), ids in others.groupby(["candidate", "traffic_date"])["conversation_id"]:
        if name == PRODUCTION and day in set(skip_production_dates):
            continue
        mine, theirs = set(ids), base_sets.get(day, set())
        rows.append(
            {
                "candidate": name,
                "traffic_date": day,
                "prefixes": len(mine),
                "baseline_prefixes": len(theirs),
                "only_candidate": len(mine - theirs),
                "only_baseline": len(theirs - mine),
                "covered": mine == theirs,
            }
        )
    return pd.DataFrame(rows, columns=columns)


def coverage_result(table: pd.DataFrame, baseline: str) -> dg.AssetCheckResult:
    """Passes when every compared candidate x day has the baseline's prefixes, no more, no less."""
    gaps = table[~table["covered"].astype(bool)] if len(table) else table
    if table.empty:
        text = f"no candidate besides the baseline {baseline!r} has grades to compare"
    elif gaps.empty:
        text = f"{len(table)} candidate x day pairs graded on exactly the baseline's prefixes"
    else:
        text = (
            f"{len(gaps)} candidate x day pairs not graded on the same prefixes as the "
            f"baseline {baseline!r}: replay and grade the side that is short"
        )
    return dg.AssetCheckResult(
        passed=bool(len(table) and gaps.empty),
        description=text,
        metadata={
            "baseline": baseline,
            "pairs": len(table),
            "gaps": len(gaps),
            "coverage": dg.MetadataValue.md(md_table(gaps if len(gaps) else table, max_rows=60)),
        },
    )


@_asset_check(
    asset=candidate_comparison,
    name="candidate_comparison_coverage",
    blocking=True,
    description=(
        "Fails when a compared candidate and the baseline were graded on different prefixes "
        "of a day (or the baseline lacks a day the candidate has)."
    ),
)
def candidate_comparison_coverage(
    warehouse: DuckDBResource, registry: CandidateRegistry
) -> dg.AssetCheckResult:
    """The comparison pairs prefixes graded in both arms, so a gap does not bias a ratio; it
    shrinks what is compared without saying so. This check says so, per candidate and day."""
    loaded = registry.load()
    baseline = loaded.baseline_name()
    with warehouse.get_connection() as conn:
        ensure_tables(conn)
        graded = conn.execute(
            f"SELECT DISTINCT candidate, traffic_date, conversation_id FROM {JUDGE_GRADES.name}"
        ).df()
    table = coverage_table(graded, baseline, served_by_others(loaded))
    return coverage_result(table, baseline)


CHECKS = [
    sampled_conversations_min_size,
    candidate_completions_complete,
    candidate_completions_error_share,
    judge_grades_single_version,
    candidate_comparison_coverage,
]
