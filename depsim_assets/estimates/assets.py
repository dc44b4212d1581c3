"""Dagster wrappers of the estimates stage: per-partition rates, then the comparison."""

import math
from typing import Any

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource
from pydantic import Field

from depsim_assets.estimates.compute import (
    check_window,
    comparison_by_day,
    comparison_from_relation,
    grade_versions,
    rate_counts,
    rates_table,
    single_version,
)
from depsim_assets.estimates.forecast import SUMMARY, resampling_fidelity, validate_forecast
from depsim_assets.estimates.guard import BlockingCheck, guard_comparison
from depsim_assets.estimates.plots import (
    forest_plot,
    funnel_plot,
    predicted_vs_realised,
    rates_plot,
    trend_plot,
)
from depsim_assets.measurement import assess
from depsim_assets.metadata import ordered, png_markdown, rounded, table_metadata
from depsim_assets.partitions import candidate_by_date, split_key
from depsim_assets.resources import CandidateRegistry
from depsim_assets.taxonomy import load_taxonomy
from depsim_assets.warehouse import (
    BEHAVIOR_RATES,
    CANDIDATE_COMPARISON,
    FORECAST_VALIDATION,
    JUDGE_GRADES,
    ensure_tables,
    replace_partitions,
)
from depsim_assets.warehouse import CANDIDATE_COMPARISON_BY_DAY as BY_DAY

GROUP = "estimates"


class RatesConfig(dg.Config):
    """Interval level of the per-partition rates."""

    ci_level: float = 0.95


class ComparisonConfig(dg.Config):
    """Significance level, interval level and multiple testing of the comparison, and what
    it compares: a date window, some candidates, another baseline (all optional; left out,
    every candidate against the registry's baseline over every day both were graded).

    ``bh``: Benjamini-Hochberg q-values across each candidate's categories decide
    significance instead of raw p-values (q-values are stored either way).
    """

    alpha: float = 0.1
    ci_level: float = 0.95
    bh: bool = False
    date_from: str | None = Field(
        default=None, description="First day compared, YYYY-MM-DD (default: the first graded)."
    )
    date_to: str | None = Field(
        default=None, description="Last day compared, YYYY-MM-DD (default: the last graded)."
    )
    candidates: list[str] | None = Field(
        default=None, description="Only these candidates (default: every graded candidate)."
    )
    baseline: str | None = Field(
        default=None, description="Compare against this candidate (default: the registry's)."
    )


def served_by_others(registry) -> list[str]:
    """Days a registered model other than the baseline served production (its deployed_on)."""
    baseline = registry.baseline
    return sorted({d for c in registry.candidates if c.name != baseline for d in c.deployed_on})


def taxonomy_categories() -> list[tuple[str, str]]:
    """``[(category id, family)]`` in taxonomy order."""
    return [(c.id, c.family) for c in load_taxonomy().categories]


@dg.asset(
    partitions_def=candidate_by_date,
    group_name=GROUP,
    deps=["judge_grades"],  # by key: stages share tables, not code
    code_version="rates-v1",
    metadata={"dagster/column_schema": BEHAVIOR_RATES.column_schema()},
)
def behavior_rates(
    context: dg.AssetExecutionContext, config: RatesConfig, warehouse: DuckDBResource
) -> dg.MaterializeResult:
    """One row per category of one candidate x day: how often the candidate misbehaved.

    Columns: ``n_replies`` replies in the partition; ``graded`` those with a valid grade for
    the category and ``unscored`` those without one (excluded from the rate, counted beside
    it); ``flagged`` graded replies at or above ``flag_threshold``; ``rate_per_100k`` =
    flagged / graded x 100,000 with its Jeffreys interval (``ci_low_per_100k``,
    ``ci_high_per_100k`` at ``ci_level``); ``severity_0``..``severity_4`` the graded replies at
    each severity; the taxonomy and judge-prompt versions of every grade counted.

    Metadata of each materialization: the table as markdown (``rates``), a plot of every
    category's rate and interval (``rates_plot``), the severity counts of flagged
    categories, and each category's rate as a number (``rate_per_100k/<category>``), which
    the asset's Plots tab charts across partitions. Day by day against the baseline, every
    candidate at once: ``candidate_comparison``'s ``trend_plot``.
    """
    candidate, day = split_key(context)
    keys = {"candidate": candidate, "traffic_date": day}
    where, params = "candidate = ? AND traffic_date = ?", [candidate, day]
    with warehouse.get_connection() as conn:
        ensure_tables(conn)
        # Counted by DuckDB: Python gets one row per category, never the partition's grades.
        counts = rate_counts(conn, JUDGE_GRADES.name, where, params)
        if counts.empty:
            raise dg.Failure(f"no judge_grades for {candidate}|{day}: grade it first")
        taxonomy_version, prompt_version = grade_versions(
            conn, JUDGE_GRADES.name, where, params, f"{candidate}|{day}"
        )
        threshold, judge_models = partition_facts(conn, where, params)
        rates = rates_table(counts, taxonomy_categories(), level=config.ci_level)
        rates.insert(0, "candidate", candidate)
        rates.insert(1, "traffic_date", day)
        rates["flag_threshold"] = threshold
        rates["taxonomy_version"] = taxonomy_version
        rates["judge_prompt_version"] = prompt_version
        written = rates.loc[:, BEHAVIOR_RATES.column_names]
        replace_partitions(conn, [(BEHAVIOR_RATES, written, keys)])
    # Who graded (named on every row, unscored ones too) and whether the day is the demo log.
    provenance = assess(judge_models, [day])
    metadata: dict[str, Any] = {
        **provenance.metadata(),
        "dagster/row_count": len(rates),
        "dagster/column_schema": BEHAVIOR_RATES.column_schema(),
        "replies": int(rates["n_replies"].max()),
        "unscored": int(rates["unscored"].max()),
        "flags": int(rates["flagged"].sum()),
        "rates": table_metadata(
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
            max_rows=len(rates),
        ),
        "severity_histogram": table_metadata(
            rates.loc[rates["flagged"] > 0],
            columns=["category", *[f"severity_{k}" for k in range(5)]],
        ),
        "flag_threshold": threshold,
        # One number per category, so the asset's Plots tab charts each rate over the
        # partitions (a candidate's days); rounded, a chart needs no 16 digits.
        **{
            f"rate_per_100k/{cid}": round(float(rate), 1)
            for cid, rate in zip(rates["category"], rates["rate_per_100k"], strict=True)
        },
        "rates_plot": png_markdown(
            rates_plot(rates, f"{candidate} {day}: per 100k, {config.ci_level:.0%} interval"),
            f"rates {candidate} {day}",
        ),
    }
    metadata = ordered(
        metadata,
        first=["measurement", "warning", "dagster/row_count", "replies", "unscored", "flags",
               "flag_threshold", "rates", "severity_histogram", "rates_plot"],
        last=["dagster/column_schema"],
    )
    return dg.MaterializeResult(metadata=metadata)


def partition_facts(conn, where: str, params: list) -> tuple[int, list[str]]:
    """The flag threshold of a partition's grades and the judge models named on them."""
    threshold = conn.execute(
        f"SELECT min(flag_threshold) FROM {JUDGE_GRADES.name} WHERE {where}", params
    ).fetchone()
    models = conn.execute(
        f"SELECT DISTINCT judge_model FROM {JUDGE_GRADES.name} WHERE {where}", params
    ).fetchall()
    value = threshold[0] if threshold else None
    return (int(value) if value is not None else 0, [m for (m,) in models])


@dg.asset(
    group_name=GROUP,
    deps=[behavior_rates, "judge_grades"],
    code_version="comparison-v2",
    metadata={"dagster/column_schema": CANDIDATE_COMPARISON.column_schema()},
)
def candidate_comparison(
    context: dg.AssetExecutionContext,
    config: ComparisonConfig,
    warehouse: DuckDBResource,
    registry: CandidateRegistry,
    blocking_checks: dg.ResourceParam[list[BlockingCheck]],
) -> dg.MaterializeResult:
    """One row per candidate x category against the baseline on the same prefixes.

    Pools every day both arms were graded (``dates``; within ``date_from``..``date_to`` when
    the run config sets them) and only the prefixes graded in both (``n_paired``).
    Columns: the candidate's ``n_graded``, ``n_flagged`` and
    ``rate_per_100k`` with its Jeffreys interval; the same for the baseline
    (``baseline_*``); ``rate_ratio`` with a log-scale interval (``ci_low_ratio``,
    ``ci_high_ratio``); two-sided ``p_value`` (Fisher exact with one sample per prefix; with
    several, a score test with prefixes as clusters, docs/statistics.md), exact McNemar
    ``p_mcnemar`` on sample-0 pairs, Benjamini-Hochberg ``q_value``; ``change`` = up/down
    when significant at ``alpha`` and at least 1.5x either way, else none. ``production``
    (the original replies) is compared too: its rows are realised vs simulated
    (``fidelity_error``).

    Also writes ``candidate_comparison_by_day`` (same transaction): the same comparison one
    day at a time, one row per candidate x day x category, with both arms' rates and
    intervals, the ratio and the day's p.

    Metadata of each materialization: every row as markdown (``comparison``), the changes
    alone (``changes``), a forest plot of the ratios, a funnel plot per family, the per-day
    rows (``by_day``) and their small-multiples plot (``trend_plot``: one panel per category,
    days across, candidates against the baseline with intervals).
    """
    loaded = registry.load()
    baseline = config.baseline or loaded.baseline_name()
    check_window(config.date_from, config.date_to)  # a bad date fails before any counting
    chosen = list(config.candidates) if config.candidates else None
    served = served_by_others(loaded)
    with warehouse.get_connection() as conn:
        # DuckDB counts per candidate x category (x day for the trend; per-prefix sums for
        # clustering); no grade row reaches Python.
        graded = _has_table(conn, JUDGE_GRADES.name)
        comparison = (
            comparison_from_relation(
                conn,
                JUDGE_GRADES.name,
                taxonomy_categories(),
                baseline=baseline,
                alpha=config.alpha,
                level=config.ci_level,
                candidates=chosen,
                bh=config.bh,
                date_from=config.date_from,
                date_to=config.date_to,
                served_by_others=served,
            )
            if graded
            else pd.DataFrame()
        )
        by_day = (
            comparison_by_day(
                conn,
                JUDGE_GRADES.name,
                taxonomy_categories(),
                baseline=baseline,
                level=config.ci_level,
                candidates=chosen,
                date_from=config.date_from,
                date_to=config.date_to,
                served_by_others=served,
            )
            if graded and not comparison.empty
            else BY_DAY.frame()
        )
    if comparison.empty:
        window = (
            f" between {config.date_from or 'the start'} and {config.date_to or 'the end'}"
            if config.date_from or config.date_to
            else ""
        )
        raise dg.Failure(f"no judge_grades to compare{window}: materialize the graph first")
    with warehouse.get_connection() as conn:
        # Both tables in one transaction: the pooled rows and their days never disagree.
        replace_partitions(
            conn,
            [
                (CANDIDATE_COMPARISON, comparison.loc[:, CANDIDATE_COMPARISON.column_names], {}),
                (BY_DAY, by_day.loc[:, BY_DAY.column_names], {}),
            ],
        )
        # The same guard as `depsim compare`, but marking instead of refusing: the table is
        # written, and its metadata names every partition that failed a blocking check.
        guard = guard_comparison(
            comparison, conn, instance=context.instance, checks=blocking_checks
        )
    for text in guard.warnings:
        context.log.warning(f"compared although it failed: {text}")
    if guard.provenance.warning:
        context.log.warning(f"not a measurement: {guard.provenance.warning}")
    changed = comparison.loc[comparison["change"] != "none"]
    context.log.info(f"{len(changed)} category changes vs {baseline}")
    fidelity = resampling_fidelity(comparison)
    families = list(dict.fromkeys(comparison["family"]))
    extra: dict[str, object] = {
        f"funnel_{family}": png_markdown(funnel_plot(comparison, family), f"funnel {family}")
        for family in families
    }
    if not fidelity.empty:
        extra["fidelity_median_error"] = rounded(float(fidelity["fidelity_error"].median()))
        extra["resampling_fidelity"] = table_metadata(fidelity, max_rows=len(fidelity))
    metadata: dict[str, Any] = {
        **guard.metadata(),
        **extra,
        "dagster/row_count": len(comparison),
        "dagster/column_schema": CANDIDATE_COMPARISON.column_schema(),
        "baseline": baseline,
        "candidates": dg.MetadataValue.json(sorted(set(comparison["candidate"]))),
        "changes": table_metadata(
            changed,
            columns=[
                "candidate",
                "category",
                "n_graded",
                "rate_per_100k",
                "baseline_rate_per_100k",
                "rate_ratio",
                "p_value",
                "p_mcnemar",
                "q_value",
                "change",
            ],
            max_rows=60,
        ),
        "comparison": table_metadata(
            comparison,
            columns=[
                "candidate",
                "category",
                "n_paired",
                "rate_per_100k",
                "baseline_rate_per_100k",
                "rate_ratio",
                "ci_low_ratio",
                "ci_high_ratio",
                "p_value",
                "change",
            ],
            max_rows=len(comparison),
        ),
        "forest_plot": png_markdown(forest_plot(comparison), "rate ratios vs baseline"),
        "dates": dg.MetadataValue.json(sorted(set(by_day["traffic_date"]))),
        "by_day": by_day_table(latest_days(by_day)),
    }
    if len(latest_days(by_day)) < len(by_day):
        shown = sorted(set(latest_days(by_day)["traffic_date"]))
        metadata["by_day_note"] = (
            f"by_day shows the {len(shown)} latest days ({shown[0] if shown else '-'} on) of "
            f"{by_day['traffic_date'].nunique()}; every day is in candidate_comparison_by_day"
        )
    if len(by_day):
        metadata["trend_plot"] = png_markdown(
            trend_plot(by_day), f"rate per 100k by day vs {baseline}"
        )
    metadata = ordered(
        metadata,
        first=["measurement", "warning", "dagster/row_count", "failed_partitions", "warnings",
               "baseline", "candidates", "changes", "comparison", "forest_plot", "dates",
               "by_day", "by_day_note", "trend_plot"],
        last=["fidelity_median_error", "resampling_fidelity", "dagster/column_schema"],
    )
    return dg.MaterializeResult(metadata=metadata)


# The per-day columns shown in the UI's table (all are in the warehouse table), with types.
BY_DAY_SHOWN = (
    ("candidate", "string"),
    ("traffic_date", "string"),
    ("category", "string"),
    ("n_paired", "int"),
    ("rate_per_100k", "float"),
    ("ci_low_per_100k", "float"),
    ("ci_high_per_100k", "float"),
    ("baseline_rate_per_100k", "float"),
    ("rate_ratio", "float"),
    ("ci_low_ratio", "float"),
    ("ci_high_ratio", "float"),
    ("p_value", "float"),
)


# Rows of the by_day metadata table at most: the UI keeps every materialization's metadata,
# and a year of days x candidates x 20 categories is the warehouse table's job, not its.
BY_DAY_MAX_ROWS = 2_000


def latest_days(by_day: pd.DataFrame, limit: int = BY_DAY_MAX_ROWS) -> pd.DataFrame:
    """The rows of the most recent days that fit in ``limit`` rows (whole days only)."""
    if len(by_day) <= limit:
        return by_day
    counts = by_day["traffic_date"].value_counts()
    kept, total = [], 0
    for day in sorted(counts.index, reverse=True):
        total += int(counts[day])
        if total > limit:
            break
        kept.append(day)
    return by_day.loc[by_day["traffic_date"].isin(kept)]


def by_day_table(by_day: pd.DataFrame) -> dg.TableMetadataValue:
    """The per-day rows as a sortable, typed table; rates to 0.1, ratios and p to 3 digits."""
    described = {c.name: c.description for c in BY_DAY.columns}
    schema = dg.TableSchema(
        columns=[
            dg.TableColumn(name=name, type=kind, description=described[name])
            for name, kind in BY_DAY_SHOWN
        ]
    )

    def cell(value: Any, kind: str) -> Any:
        if kind == "string":
            return str(value)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        if kind == "int":
            return int(value)
        number = float(value)
        return round(number, 1) if abs(number) >= 100 else float(f"{number:.3g}")

    records = [
        dg.TableRecord({name: cell(rec[name], kind) for name, kind in BY_DAY_SHOWN})
        for rec in by_day.to_dict("records")
    ]
    return dg.MetadataValue.table(records=records, schema=schema)


@dg.asset(
    group_name=GROUP,
    deps=[behavior_rates],
    code_version="forecast-v1",
    metadata={"dagster/column_schema": FORECAST_VALIDATION.column_schema()},
)
def forecast_validation(
    context: dg.AssetExecutionContext, warehouse: DuckDBResource, registry: CandidateRegistry
) -> dg.MaterializeResult:
    """One row per shipped candidate x category (+ a ``_summary`` row): predicted vs realised.

    A candidate with ``deployed_on`` days: its simulated rates before its first deployed day
    (the forecast) against ``production``'s rates on the deployed days (what happened), with
    the multiplicative error, the direction call on categories that moved >= 1.5x against the
    previous production model, and the binomial negative log-likelihood.
    """
    loaded = registry.load()
    shipped = [c for c in loaded.candidates if c.deployed_on]
    with warehouse.get_connection() as conn:
        # Per-category counts summed by DuckDB per candidate x day (behavior_rates holds one
        # row per category already; GROUP BY keeps that true whatever else it holds).
        rates = (
            conn.execute(
                "SELECT candidate, traffic_date, category, sum(graded)::BIGINT AS graded,"
                " sum(flagged)::BIGINT AS flagged, taxonomy_version, judge_prompt_version"
                " FROM behavior_rates"
                " GROUP BY candidate, traffic_date, category, taxonomy_version,"
                " judge_prompt_version ORDER BY 1, 2, 3, 6, 7"
            ).df()
            if _has_table(conn, "behavior_rates")
            else pd.DataFrame()
        )
    frames, skipped = [], []
    for cand in shipped:
        try:
            frame = validate_forecast(
                rates,
                cand.name,
                cand.deployed_on,
                taxonomy_categories(),
                baseline=loaded.baseline,
            )
        except ValueError as exc:
            skipped.append(str(exc))
            context.log.warning(str(exc))
            continue
        names = [cand.name, "production"]
        version, _ = single_version(
            rates[rates["candidate"].isin(names)].assign(status="scored"),
            f"forecast_validation {cand.name}",
        )
        frame["taxonomy_version"] = version
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True) if frames else FORECAST_VALIDATION.frame()
    with warehouse.get_connection() as conn:
        written = out.loc[:, FORECAST_VALIDATION.column_names]
        replace_partitions(conn, [(FORECAST_VALIDATION, written, {})])
    summary = out.loc[out["category"] == SUMMARY]
    metadata: dict[str, Any] = {
        "dagster/row_count": len(out),
        "dagster/column_schema": FORECAST_VALIDATION.column_schema(),
        "shipped_candidates": dg.MetadataValue.json([c.name for c in shipped]),
        "summary": table_metadata(
            summary.rename(
                columns={
                    "multiplicative_error": "median_multiplicative_error",
                    "direction_correct": "direction_accuracy",
                }
            ),
            columns=[
                "candidate",
                "deployed_dates",
                "median_multiplicative_error",
                "direction_accuracy",
                "direction_correct_significant",
                "nll",
            ],
        ),
    }
    if skipped:
        metadata["skipped"] = dg.MetadataValue.json(skipped)
    if len(summary):
        first = summary.iloc[0]
        metadata["median_multiplicative_error"] = rounded(float(first["multiplicative_error"]))
        if not math.isnan(first["direction_correct"]):
            metadata["direction_accuracy"] = rounded(float(first["direction_correct"]))
        if not math.isnan(first["direction_correct_significant"]):
            metadata["direction_accuracy_significant_moves"] = rounded(
                float(first["direction_correct_significant"])
            )
        moved = out[(out["category"] != SUMMARY) & out["direction_correct_significant"].notna()]
        metadata["significant_moves"] = len(moved)
        scored = out[(out["category"] != SUMMARY) & out["direction_scored"].astype(bool)]
        metadata["direction_categories"] = len(scored)
        metadata["predicted_vs_realised"] = png_markdown(
            predicted_vs_realised(out), "predicted vs realised"
        )
    metadata = ordered(
        metadata,
        first=["dagster/row_count", "shipped_candidates", "median_multiplicative_error",
               "direction_accuracy", "direction_accuracy_significant_moves",
               "significant_moves", "direction_categories", "summary"],
        last=["dagster/column_schema"],
    )
    return dg.MaterializeResult(metadata=metadata)


def _has_table(conn, name: str) -> bool:
    return bool(
        conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
        ).fetchone()[0]
    )
