"""Asset checks of the estimates stage: both arms of a comparison on the same prefixes.

``candidate_comparison_coverage`` is blocking: it fails when a compared candidate and the
baseline were graded on different prefixes of a day (or the baseline lacks a day the candidate
has); the comparison pairs prefixes graded in both arms, so a gap shrinks what is compared
without saying so. The logic is a plain function over DataFrames, testable without Dagster.
"""

from collections.abc import Collection

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from depsim_assets.estimates.assets import candidate_comparison, served_by_others
from depsim_assets.metadata import table_metadata
from depsim_assets.partitions import PRODUCTION
from depsim_assets.resources import CandidateRegistry
from depsim_assets.warehouse import JUDGE_GRADES, ensure_tables


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
    pairs = others.groupby(["candidate", "traffic_date"], as_index=False)["conversation_id"]
    for name, day, ids in pairs.agg(set).itertuples(index=False):
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
    return pd.DataFrame(rows, columns=pd.Index(columns))


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
        graded = conn.execute(
            f"SELECT DISTINCT candidate, traffic_date, conversation_id FROM {JUDGE_GRADES.name}"
        ).df()
    table = coverage_table(graded, baseline, served_by_others(loaded))
    return coverage_result(table, baseline)
