"""Asset checks of the judging stage (the unscored-share check sits beside its asset).

``judge_grades_single_version`` is blocking: ``behavior_rates`` is never built from a
partition whose grades mix taxonomy versions, judge-prompt versions or flag thresholds, since
one rate must never pool them. The logic is a plain function, testable without Dagster.
"""

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from depsim_assets.judging.assets import judge_grades
from depsim_assets.metadata import table_metadata
from depsim_assets.partitions import candidate_by_date, partitioned_asset_check, split_key
from depsim_assets.warehouse import JUDGE_GRADES, ensure_tables

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
            "rows_by_version": table_metadata(found, max_rows=len(found)),
        },
    )


@partitioned_asset_check(
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
    candidate, day = split_key(context)
    with warehouse.get_connection() as conn:
        ensure_tables(conn)
        grades = conn.execute(
            f"SELECT {', '.join(VERSION_COLUMNS)} FROM {JUDGE_GRADES.name} "
            "WHERE candidate = ? AND traffic_date = ?",
            [candidate, day],
        ).df()
    return version_result(grades)
