"""Asset checks of the estimates stage: both arms of a comparison on the same prefixes.

``candidate_comparison_coverage`` is blocking: it fails when a compared candidate and the
baseline were graded on different prefixes of a day (or the baseline lacks a day the candidate
has); the comparison pairs prefixes graded in both arms, so a gap shrinks what is compared
without saying so. The logic is a plain function over DataFrames, testable without Dagster.
"""

from collections.abc import Collection

import dagster as dg
import duckdb
import pandas as pd
from dagster_duckdb import DuckDBResource

from depsim_assets.estimates.assets import candidate_comparison, served_by_others
from depsim_assets.metadata import table_metadata
from depsim_assets.partitions import PRODUCTION
from depsim_assets.resources import CandidateRegistry
from depsim_assets.warehouse import JUDGE_GRADES, ensure_tables

COVERAGE_COLUMNS = [
    "candidate",
    "traffic_date",
    "prefixes",
    "baseline_prefixes",
    "only_candidate",
    "only_baseline",
    "covered",
]

# Per compared candidate x day, counted where the grades are: Python gets one row per
# candidate x day, never a prefix. Read by DuckDB and Postgres alike.
_COVERAGE_SQL = """
WITH p AS (
    SELECT DISTINCT candidate, traffic_date, conversation_id FROM {relation}
), b AS (
    SELECT traffic_date, conversation_id FROM p WHERE candidate = ?
), mine AS (
    SELECT o.candidate, o.traffic_date, count(*) AS prefixes,
           count(*) FILTER (WHERE b.conversation_id IS NULL) AS only_candidate
    FROM p o LEFT JOIN b
      ON b.traffic_date = o.traffic_date AND b.conversation_id = o.conversation_id
    WHERE o.candidate <> ? AND NOT (o.candidate = ? AND {skipped})
    GROUP BY o.candidate, o.traffic_date
), base_n AS (
    SELECT traffic_date, count(*) AS baseline_prefixes FROM b GROUP BY traffic_date
)
SELECT m.candidate, m.traffic_date, m.prefixes,
       coalesce(n.baseline_prefixes, 0) AS baseline_prefixes, m.only_candidate,
       coalesce(n.baseline_prefixes, 0) - (m.prefixes - m.only_candidate) AS only_baseline,
       m.only_candidate = 0 AND coalesce(n.baseline_prefixes, 0) = m.prefixes AS covered
FROM mine m LEFT JOIN base_n n ON n.traffic_date = m.traffic_date
"""


def coverage_counts(
    conn, relation: str, baseline: str, skip_production_dates: Collection[str] = ()
) -> pd.DataFrame:
    """One row per compared candidate x day of the grade rows in ``relation``: prefixes
    graded for it, for the baseline, and how many only one side has (see
    :func:`coverage_table`), counted in SQL."""
    skipped = sorted(skip_production_dates)
    sql = _COVERAGE_SQL.format(
        relation=relation,
        skipped=f"o.traffic_date IN ({', '.join('?' * len(skipped))})" if skipped else "FALSE",
    )
    frame = conn.execute(sql, [baseline, baseline, PRODUCTION, *skipped]).df()
    frame["covered"] = frame["covered"].astype(bool)
    ordered = frame.sort_values(["candidate", "traffic_date"], kind="stable")
    return ordered.reset_index(drop=True).loc[:, COVERAGE_COLUMNS]


def coverage_table(
    graded: pd.DataFrame, baseline: str, skip_production_dates: Collection[str] = ()
) -> pd.DataFrame:
    """One row per compared candidate x day: prefixes graded for it, for the baseline, and
    how many only one side has.

    ``graded`` holds distinct ``(candidate, traffic_date, conversation_id)`` of the grades.
    A day the baseline was graded and the candidate was not is not a gap (the candidate was
    not replayed that day); a day the candidate has and the baseline lacks is: the comparison
    silently leaves it out. ``production`` is not compared on ``skip_production_dates``
    (days another model served production), so they are skipped here too. The same SQL as
    the check's (:func:`coverage_counts`), on an in-memory DuckDB.
    """
    conn = duckdb.connect(":memory:")
    try:
        frame = graded.loc[:, ["candidate", "traffic_date", "conversation_id"]].astype(str)
        conn.register("graded_frame", frame)
        return coverage_counts(conn, "graded_frame", baseline, skip_production_dates)
    finally:
        conn.close()


def coverage_result(table: pd.DataFrame, baseline: str) -> dg.AssetCheckResult:
    """Passes when every compared candidate x day has the baseline's prefixes, no more, no less."""
    gaps = table.loc[~table["covered"].astype(bool)] if len(table) else table
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
            "coverage": table_metadata(gaps if len(gaps) else table, max_rows=60),
        },
    )


@dg.asset_check(
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
        table = coverage_counts(conn, JUDGE_GRADES.name, baseline, served_by_others(loaded))
    return coverage_result(table, baseline)
