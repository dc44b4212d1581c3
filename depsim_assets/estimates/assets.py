"""Dagster wrappers of the estimates stage: per-partition rates, then the comparison."""

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from depsim_assets.estimates.compute import build_comparison, rates_from_grades, single_version
from depsim_assets.estimates.plots import forest_plot
from depsim_assets.judging.assets import judge_grades
from depsim_assets.judging.taxonomy import load_taxonomy
from depsim_assets.metadata import md_table, png_markdown
from depsim_assets.partitions import candidate_by_date, split_key
from depsim_assets.resources import CandidateRegistry
from depsim_assets.warehouse import (
    BEHAVIOR_RATES,
    CANDIDATE_COMPARISON,
    JUDGE_GRADES,
    read_partition,
    replace_partitions,
)

GROUP = "estimates"


class RatesConfig(dg.Config):
    """Interval level of the per-partition rates."""

    ci_level: float = 0.95


class ComparisonConfig(dg.Config):
    """Significance level and interval level of the comparison."""

    alpha: float = 0.1
    ci_level: float = 0.95


def taxonomy_categories() -> list[tuple[str, str]]:
    """``[(category id, family)]`` in taxonomy order."""
    return [(c.id, c.family) for c in load_taxonomy().categories]


@dg.asset(
    partitions_def=candidate_by_date,
    group_name=GROUP,
    deps=[judge_grades],
    code_version="rates-v1",
    metadata={"dagster/column_schema": BEHAVIOR_RATES.column_schema()},
)
def behavior_rates(
    context: dg.AssetExecutionContext, config: RatesConfig, warehouse: DuckDBResource
) -> dg.MaterializeResult:
    """One row per category: graded, flagged, unscored, rate per 100k and Jeffreys interval.

    Unscored replies are excluded from the rate and counted beside it.
    """
    candidate, day = split_key(context)
    keys = {"candidate": candidate, "traffic_date": day}
    with warehouse.get_connection() as conn:
        grades = read_partition(conn, JUDGE_GRADES, keys)
        if grades.empty:
            raise dg.Failure(f"no judge_grades for {candidate}|{day}: grade it first")
        taxonomy_version, prompt_version = single_version(grades, f"{candidate}|{day}")
        threshold = int(grades["flag_threshold"].iloc[0])
        rates = rates_from_grades(grades, taxonomy_categories(), level=config.ci_level)
        rates.insert(0, "candidate", candidate)
        rates.insert(1, "traffic_date", day)
        rates["flag_threshold"] = threshold
        rates["taxonomy_version"] = taxonomy_version
        rates["judge_prompt_version"] = prompt_version
        replace_partitions(conn, [(BEHAVIOR_RATES, rates[BEHAVIOR_RATES.column_names], keys)])
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(rates),
            "dagster/column_schema": BEHAVIOR_RATES.column_schema(),
            "replies": int(rates["n_replies"].max()),
            "unscored": int(rates["unscored"].max()),
            "flags": int(rates["flagged"].sum()),
            "rates": dg.MetadataValue.md(
                md_table(
                    rates,
                    columns=[
                        "category",
                        "graded",
                        "flagged",
                        "unscored",
                        "rate_per_100k",
                        "ci_low_per_100k",
                        "ci_high_per_100k",
                    ],
                )
            ),
        }
    )


GRADE_COLUMNS = [
    "candidate",
    "traffic_date",
    "conversation_id",
    "sample_index",
    "category",
    "status",
    "flagged",
    "taxonomy_version",
    "judge_prompt_version",
]


def read_all_grades(conn) -> pd.DataFrame:
    """Every grade row the comparison needs (not the evidence text); works read-only."""
    exists = conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'judge_grades'"
    ).fetchone()[0]
    if not exists:
        return pd.DataFrame(columns=GRADE_COLUMNS)
    return conn.execute(f"SELECT {', '.join(GRADE_COLUMNS)} FROM judge_grades").df()


@dg.asset(
    group_name=GROUP,
    deps=[behavior_rates, judge_grades],
    code_version="comparison-v1",
    metadata={"dagster/column_schema": CANDIDATE_COMPARISON.column_schema()},
)
def candidate_comparison(
    context: dg.AssetExecutionContext,
    config: ComparisonConfig,
    warehouse: DuckDBResource,
    registry: CandidateRegistry,
) -> dg.MaterializeResult:
    """One row per candidate x category against the baseline on the same prefixes.

    Rate ratio with a log-scale interval, two-sided Fisher exact p, and ``change`` = up/down
    when significant at alpha and at least 1.5x either way. ``production`` (the original
    replies) is compared too: that row is realised vs simulated.
    """
    baseline = registry.load().baseline_name()
    with warehouse.get_connection() as conn:
        grades = read_all_grades(conn)
    comparison = build_comparison(
        grades,
        taxonomy_categories(),
        baseline=baseline,
        alpha=config.alpha,
        level=config.ci_level,
    )
    if comparison.empty:
        raise dg.Failure("no judge_grades to compare: materialize the graph first")
    with warehouse.get_connection() as conn:
        replace_partitions(
            conn, [(CANDIDATE_COMPARISON, comparison[CANDIDATE_COMPARISON.column_names], {})]
        )
    changed = comparison[comparison["change"] != "none"]
    context.log.info(f"{len(changed)} category changes vs {baseline}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(comparison),
            "dagster/column_schema": CANDIDATE_COMPARISON.column_schema(),
            "baseline": baseline,
            "candidates": dg.MetadataValue.json(sorted(set(comparison["candidate"]))),
            "changes": dg.MetadataValue.md(
                md_table(
                    changed,
                    columns=[
                        "candidate",
                        "category",
                        "n_graded",
                        "rate_per_100k",
                        "baseline_rate_per_100k",
                        "rate_ratio",
                        "p_value",
                        "change",
                    ],
                    max_rows=60,
                )
            ),
            "forest_plot": png_markdown(forest_plot(comparison), "rate ratios vs baseline"),
        }
    )
