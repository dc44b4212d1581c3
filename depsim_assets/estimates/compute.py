"""Rates and comparisons, counted by DuckDB (``GROUP BY``) and tested in Python (no Dagster).

Every count a rate or a test needs, per category (and, for prefixes sampled several times,
the per-prefix sums of squares that clustering needs), is computed in SQL over the grade
rows where they are stored; Python receives one row per category, never a grade row. The
same SQL serves the warehouse's ``judge_grades`` and a pandas frame of grade rows (tests,
scripts), which is registered in an in-memory DuckDB first.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager

import duckdb
import pandas as pd

from depsim_assets.estimates.forecast import fidelity_errors
from depsim_assets.estimates.stats import (
    ArmSums,
    ClusterSums,
    bh_qvalues,
    change_call,
    compare,
    jeffreys_interval,
    mcnemar_exact,
    rate_interval,
    rate_per_100k,
)

PER = 100_000
PRODUCTION = "production"  # the original replies (partitions.PRODUCTION, without Dagster)
SEVERITIES = range(5)

# The grade columns the estimates read, with their warehouse types (judge_grades' declaration).
GRADE_TYPES = {
    "candidate": "VARCHAR",
    "traffic_date": "VARCHAR",
    "conversation_id": "VARCHAR",
    "sample_index": "INTEGER",
    "category": "VARCHAR",
    "status": "VARCHAR",
    "flagged": "BOOLEAN",
    "severity": "INTEGER",
    "taxonomy_version": "VARCHAR",
    "judge_prompt_version": "VARCHAR",
}


class VersionMixError(ValueError):
    """Grades made under different taxonomy or judge-prompt versions were asked to be pooled."""


def _one_version(found: Sequence[tuple[str, str, bool]], what: str) -> tuple[str, str]:
    """The one (taxonomy, prompt) version among ``(taxonomy, prompt, scored)``; scored first."""
    scored = [(t, p) for t, p, s in found if s]
    versions = list(dict.fromkeys(scored or [(t, p) for t, p, _ in found]))
    if len(versions) > 1:
        listed = ", ".join(f"{t}/{p}" for t, p in versions)
        raise VersionMixError(
            f"{what}: grades from more than one taxonomy/judge-prompt version ({listed}); "
            "re-materialize judge_grades for every partition compared so they share one version"
        )
    if not versions:
        return ("", "")
    return (str(versions[0][0]), str(versions[0][1]))


def single_version(grades: pd.DataFrame, what: str) -> tuple[str, str]:
    """The one (taxonomy, judge prompt) version of ``grades``; refuse to mix two."""
    if grades.empty:
        return ("", "")
    scored = grades["status"] == "scored"
    frame = grades.assign(_scored=scored)[["taxonomy_version", "judge_prompt_version", "_scored"]]
    found = [(t, p, bool(s)) for t, p, s in frame.drop_duplicates().itertuples(index=False)]
    return _one_version(found, what)


def grade_versions(
    conn: duckdb.DuckDBPyConnection, relation: str, where: str, params: list, what: str
) -> tuple[str, str]:
    """:func:`single_version` of the rows of ``relation`` matching ``where``, asked of DuckDB."""
    rows = conn.execute(
        f"SELECT DISTINCT taxonomy_version, judge_prompt_version, status = 'scored' "
        f"FROM {relation} WHERE {where} ORDER BY 1, 2, 3",
        params,
    ).fetchall()
    return _one_version([(t, p, bool(s)) for t, p, s in rows], what)


def check_window(date_from: str | None, date_to: str | None) -> None:
    """One-line ValueError when a window bound is not a date or the window is reversed."""
    for label, value in (("--from", date_from), ("--to", date_to)):
        if value is not None:
            try:
                dt.date.fromisoformat(value)
            except ValueError:
                raise ValueError(f"{label} {value!r} is not a date (YYYY-MM-DD)") from None
    if date_from and date_to and date_from > date_to:
        raise ValueError(f"--from {date_from} is after --to {date_to}")


def in_window(frame: pd.DataFrame, date_from: str | None, date_to: str | None) -> pd.DataFrame:
    """Rows whose ``traffic_date`` lies in ``[date_from, date_to]`` (ISO strings; None = open)."""
    check_window(date_from, date_to)
    if frame.empty:
        return frame
    keep = pd.Series(True, index=frame.index)
    if date_from:
        keep &= frame["traffic_date"] >= date_from
    if date_to:
        keep &= frame["traffic_date"] <= date_to
    return frame.loc[keep]


def _placeholders(count: int) -> str:
    """``?, ?, ...`` for an IN list of ``count`` values; ``NULL`` (matches nothing) for none.

    Plain placeholders rather than a bound list: the same SQL then runs on other backends.
    """
    return ", ".join("?" * count) if count else "NULL"


def _window_sql(date_from: str | None, date_to: str | None) -> tuple[str, list]:
    where, params = ["TRUE"], []
    if date_from:
        where.append("traffic_date >= ?")
        params.append(date_from)
    if date_to:
        where.append("traffic_date <= ?")
        params.append(date_to)
    return " AND ".join(where), params


@contextmanager
def frame_relation(grades: pd.DataFrame) -> Iterator[tuple[duckdb.DuckDBPyConnection, str]]:
    """``(connection, table)``: a frame of grade rows as a typed table of an in-memory DuckDB.

    Columns the frame lacks are NULL (a frame without ``severity`` counts no severity).
    """
    frame = pd.DataFrame(index=grades.index)
    for name, kind in GRADE_TYPES.items():
        column = grades[name] if name in grades.columns else pd.Series(None, index=grades.index)
        if kind == "INTEGER":
            column = pd.Series(pd.to_numeric(column, errors="coerce"), index=grades.index)
            column = column.astype("Int64")
        elif kind == "BOOLEAN":
            column = column.astype("boolean")
        else:
            column = column.astype("string")
        frame[name] = column
    conn = duckdb.connect(":memory:")
    try:
        conn.register("grades_frame", frame)
        columns = ", ".join(f'CAST("{n}" AS {k}) AS "{n}"' for n, k in GRADE_TYPES.items())
        conn.execute(f"CREATE TABLE grades AS SELECT {columns} FROM grades_frame")
        conn.unregister("grades_frame")
        yield conn, "grades"
    finally:
        conn.close()


# --- rates of one arm ---------------------------------------------------------------------

_RATE_SQL = """
WITH g AS (
    SELECT conversation_id, category, status = 'scored' AS scored, flagged, severity
    FROM {relation} WHERE {where}
), per_category AS (
    SELECT category,
           count(*) AS n_replies,
           count(*) FILTER (WHERE scored) AS graded,
           count(*) FILTER (WHERE scored AND flagged) AS flagged,
           {severities}
    FROM g GROUP BY category
), per_prefix AS (
    SELECT category, conversation_id,
           count(*) AS n, count(*) FILTER (WHERE flagged) AS x
    FROM g WHERE scored GROUP BY category, conversation_id
), clusters AS (
    SELECT category, count(*) AS m, sum(x * x)::BIGINT AS xx, sum(x * n)::BIGINT AS xn,
           sum(n * n)::BIGINT AS nn, max(n) AS max_n
    FROM per_prefix GROUP BY category
)
SELECT * FROM per_category LEFT JOIN clusters USING (category)
"""


def rate_counts(
    conn: duckdb.DuckDBPyConnection, relation: str, where: str = "TRUE", params: list | None = None
) -> pd.DataFrame:
    """Per category of the rows of ``relation`` matching ``where``: counts and cluster sums.

    ``n_replies, graded, flagged, severity_0..4``, and over prefixes (conversations; the
    caller's ``where`` holds one day) ``m, xx, xn, nn, max_n`` as :class:`ArmSums` wants them.
    """
    severities = ",\n           ".join(
        f"count(*) FILTER (WHERE scored AND severity = {k}) AS severity_{k}" for k in SEVERITIES
    )
    sql = _RATE_SQL.format(relation=relation, where=where, severities=severities)
    return conn.execute(sql, params or []).df().set_index("category")


def _arm(row: pd.Series, prefix: str = "") -> ArmSums:
    def get(name: str) -> int:
        value = row[f"{prefix}{name}"]
        # A category with no scored row has no cluster sums (LEFT JOIN): NULL, counted as 0.
        return 0 if value is None or bool(pd.isna(value)) else int(value)

    return ArmSums(
        m=get("m"),
        flagged=get("flagged"),
        graded=get("graded"),
        xx=get("xx"),
        xn=get("xn"),
        nn=get("nn"),
        max_n=get("max_n"),
    )


def rates_table(
    counts: pd.DataFrame, categories: list[tuple[str, str]], *, level: float = 0.95
) -> pd.DataFrame:
    """One row per category from :func:`rate_counts`: counts, rate and its interval.

    The interval is Jeffreys on the counts, or on the effective counts when a prefix was
    graded more than once (see ``stats.rate_interval``).
    """
    rows = []
    for cid, family in categories:
        got = counts.loc[cid] if cid in counts.index else None
        arm = _arm(got) if got is not None else ArmSums(0, 0, 0, 0, 0, 0, 0)
        low, high = rate_interval(arm, level)
        rows.append(
            {
                "category": cid,
                "family": family,
                "n_replies": int(got["n_replies"]) if got is not None else 0,
                "graded": arm.graded,
                "flagged": arm.flagged,
                "unscored": int(got["n_replies"]) - arm.graded if got is not None else 0,
                "rate_per_100k": rate_per_100k(arm.flagged, arm.graded),
                "ci_low_per_100k": low * PER,
                "ci_high_per_100k": high * PER,
                "ci_level": level,
                **{
                    f"severity_{k}": int(got[f"severity_{k}"]) if got is not None else 0
                    for k in SEVERITIES
                },
            }
        )
    return pd.DataFrame(rows)


def rates_from_grades(
    grades: pd.DataFrame, categories: list[tuple[str, str]], *, level: float = 0.95
) -> pd.DataFrame:
    """One row per category: replies, graded, flagged, unscored, rate and interval.

    ``grades`` holds one partition's rows; ``categories`` is ``[(id, family)]`` so a category
    nobody flagged still gets its row.
    """
    with frame_relation(grades) as (conn, relation):
        return rates_table(rate_counts(conn, relation), categories, level=level)


def aggregate_rates(
    rates: pd.DataFrame,
    *,
    date_from: str | None = None,
    date_to: str | None = None,
    level: float = 0.95,
) -> pd.DataFrame:
    """``behavior_rates`` rows pooled over a date window, one row per candidate x category.

    Counts are summed and the rate and interval recomputed from the sums; rates are never
    averaged (an average of daily rates weighs a small day like a big one).
    """
    window = in_window(rates, date_from, date_to)
    count_cols = [
        "n_replies",
        "graded",
        "flagged",
        "unscored",
        *[f"severity_{k}" for k in SEVERITIES if f"severity_{k}" in window.columns],
    ]
    if window.empty:
        return pd.DataFrame(columns=pd.Index(["candidate", "category", "family", *count_cols]))
    pooled = pd.DataFrame(
        window.groupby(["candidate", "category", "family"], sort=False)[count_cols].sum()
    )
    pooled["dates"] = window.groupby(["candidate", "category", "family"], sort=False)[
        "traffic_date"
    ].agg(lambda d: ",".join(sorted(set(d))))
    pooled = pooled.reset_index()
    bounds = [
        jeffreys_interval(int(x), int(n), level)
        for x, n in zip(pooled["flagged"], pooled["graded"], strict=True)
    ]
    pooled["rate_per_100k"] = [
        rate_per_100k(int(x), int(n))
        for x, n in zip(pooled["flagged"], pooled["graded"], strict=True)
    ]
    pooled["ci_low_per_100k"] = [lo * PER for lo, _ in bounds]
    pooled["ci_high_per_100k"] = [hi * PER for _, hi in bounds]
    pooled["ci_level"] = level
    return pooled


# --- two arms on the same prefixes ----------------------------------------------------------

# Prefixes are (traffic_date, conversation_id). Per candidate x category, only prefixes scored
# in both arms count; every sample of a prefix counts in the rates, and sample 0 of each arm
# makes the prefix's McNemar pair. The per-prefix counts are summarised by their sums of
# squares and cross-products, what the prefix-clustered test needs.
_PAIRED_SQL = """
WITH g AS (
    SELECT candidate, traffic_date, conversation_id, sample_index, category, flagged
    FROM {relation} WHERE status = 'scored' AND {where}
), cand AS (
    SELECT candidate, traffic_date, conversation_id, category,
           count(*) AS n, count(*) FILTER (WHERE flagged) AS x,
           bool_or(flagged) FILTER (WHERE sample_index = 0) AS f0
    FROM g
    WHERE candidate IN ({names})
      AND NOT (candidate = ? AND {served})
    GROUP BY candidate, traffic_date, conversation_id, category
), base AS (
    SELECT traffic_date, conversation_id, category,
           count(*) AS n, count(*) FILTER (WHERE flagged) AS x,
           bool_or(flagged) FILTER (WHERE sample_index = 0) AS f0
    FROM g WHERE candidate = ?
    GROUP BY traffic_date, conversation_id, category
), pairs AS (
    SELECT c.candidate, traffic_date, c.category, c.n AS nc, c.x AS xc, c.f0 AS fc,
           b.n AS nb, b.x AS xb, b.f0 AS fb
    FROM cand c JOIN base b USING (traffic_date, conversation_id, category)
)
SELECT candidate, {day}category,
       count(*) AS n_paired,
       sum(nc)::BIGINT AS n_graded, sum(xc)::BIGINT AS n_flagged,
       sum(nb)::BIGINT AS baseline_n_graded, sum(xb)::BIGINT AS baseline_n_flagged,
       count(*) FILTER (WHERE fc AND NOT fb) AS n_discordant_up,
       count(*) FILTER (WHERE fb AND NOT fc) AS n_discordant_down,
       sum(xc * xc)::BIGINT AS xc_xc, sum(xc * nc)::BIGINT AS xc_nc,
       sum(nc * nc)::BIGINT AS nc_nc, max(nc) AS max_nc,
       sum(xb * xb)::BIGINT AS xb_xb, sum(xb * nb)::BIGINT AS xb_nb,
       sum(nb * nb)::BIGINT AS nb_nb, max(nb) AS max_nb,
       sum(xc * xb)::BIGINT AS xc_xb, sum(xc * nb)::BIGINT AS xc_nb,
       sum(nc * xb)::BIGINT AS nc_xb, sum(nc * nb)::BIGINT AS nc_nb
FROM pairs GROUP BY candidate, {day}category
"""

PAIRED_COUNTS = [
    "n_paired",
    "n_graded",
    "n_flagged",
    "baseline_n_graded",
    "baseline_n_flagged",
    "n_discordant_up",
    "n_discordant_down",
]


def paired_sums(
    conn: duckdb.DuckDBPyConnection,
    relation: str,
    *,
    baseline: str,
    candidates: Sequence[str],
    where: str = "TRUE",
    params: list | None = None,
    served_by_others: Collection[str] = (),
    by_day: bool = False,
) -> pd.DataFrame:
    """Per candidate x category against ``baseline``: paired counts and cluster sums.

    Indexed by ``(candidate, category)``, or ``(candidate, traffic_date, category)`` when
    ``by_day``; a pair nobody scored has no row. ``production`` is paired on the days not in
    ``served_by_others`` only.
    """
    served = sorted(served_by_others)
    sql = _PAIRED_SQL.format(
        relation=relation,
        where=where,
        day="traffic_date, " if by_day else "",
        names=_placeholders(len(candidates)),
        # Never an empty IN list: NOT (... AND NULL) would drop production altogether.
        served=f"traffic_date IN ({_placeholders(len(served))})" if served else "FALSE",
    )
    args = [*(params or []), *candidates, PRODUCTION, *served, baseline]
    index = ["candidate", *(["traffic_date"] if by_day else []), "category"]
    return conn.execute(sql, args).df().set_index(index)


def cluster_sums(row: pd.Series) -> ClusterSums:
    """The :class:`ClusterSums` of one row of :func:`paired_sums`."""

    def get(name: str) -> int:
        return int(row[name])

    m = get("n_paired")
    return ClusterSums(
        cand=ArmSums(
            m,
            get("n_flagged"),
            get("n_graded"),
            get("xc_xc"),
            get("xc_nc"),
            get("nc_nc"),
            get("max_nc"),
        ),
        base=ArmSums(
            m,
            get("baseline_n_flagged"),
            get("baseline_n_graded"),
            get("xb_xb"),
            get("xb_nb"),
            get("nb_nb"),
            get("max_nb"),
        ),
        xc_xb=get("xc_xb"),
        xc_nb=get("xc_nb"),
        nc_xb=get("nc_xb"),
        nc_nb=get("nc_nb"),
    )


def paired_counts(cand: pd.DataFrame, base: pd.DataFrame) -> pd.DataFrame:
    """Per category: both arms' counts on the prefixes scored in both, and discordant pairs.

    ``cand`` and ``base`` are one arm's grade rows each (any candidate names).
    """
    both = pd.concat([cand.assign(candidate="candidate"), base.assign(candidate="baseline")])
    with frame_relation(both) as (conn, relation):
        sums = paired_sums(conn, relation, baseline="baseline", candidates=["candidate"])
    if sums.empty:
        return pd.DataFrame(columns=pd.Index(PAIRED_COUNTS))
    return sums.loc["candidate"][PAIRED_COUNTS].astype(int)


def _comparison_rows(
    sums: pd.DataFrame,
    categories: list[tuple[str, str]],
    *,
    alpha: float,
    level: float,
    bh: bool,
) -> pd.DataFrame:
    """One row per category from one candidate's :func:`paired_sums` rows (by category)."""
    rows = []
    for cid, family in categories:
        got = sums.loc[cid] if cid in sums.index else None
        clusters = cluster_sums(got) if got is not None else None
        up, down = (
            (int(got["n_discordant_up"]), int(got["n_discordant_down"]))
            if got is not None
            else (0, 0)
        )
        x, n = (clusters.cand.flagged, clusters.cand.graded) if clusters else (0, 0)
        bx, bn = (clusters.base.flagged, clusters.base.graded) if clusters else (0, 0)
        low, high = (
            rate_interval(clusters.cand, level) if clusters else jeffreys_interval(0, 0, level)
        )
        base_low, base_high = (
            rate_interval(clusters.base, level) if clusters else jeffreys_interval(0, 0, level)
        )
        result = compare(x, n, bx, bn, alpha=alpha, level=level, clusters=clusters)
        rows.append(
            {
                "category": cid,
                "family": family,
                "n_paired": int(got["n_paired"]) if got is not None else 0,
                "n_graded": n,
                "n_flagged": x,
                "rate_per_100k": rate_per_100k(x, n),
                "ci_low_per_100k": low * PER,
                "ci_high_per_100k": high * PER,
                "baseline_n_graded": bn,
                "baseline_n_flagged": bx,
                "baseline_rate_per_100k": rate_per_100k(bx, bn),
                "baseline_ci_low_per_100k": base_low * PER,
                "baseline_ci_high_per_100k": base_high * PER,
                "rate_ratio": result.rate_ratio,
                "ci_low_ratio": result.ci_low_ratio,
                "ci_high_ratio": result.ci_high_ratio,
                "p_value": result.p_value,
                "n_discordant_up": up,
                "n_discordant_down": down,
                "p_mcnemar": mcnemar_exact(up, down) if up + down or n else math.nan,
                "alpha": alpha,
                "ci_level": level,
                "multiple_testing": "bh" if bh else "none",
                "significant": result.significant,
                "change": result.change,
            }
        )
    frame = pd.DataFrame(rows)
    frame["q_value"] = bh_qvalues([float(p) for p in frame["p_value"]])
    if bh:
        frame["significant"] = frame["q_value"] < alpha
        frame["change"] = [
            change_call(r, bool(s))
            for r, s in zip(frame["rate_ratio"], frame["significant"], strict=True)
        ]
    return frame


def _compared_names(
    conn: duckdb.DuckDBPyConnection,
    relation: str,
    *,
    baseline: str,
    candidates: Sequence[str] | None,
    where: str,
    params: list,
) -> tuple[list[str], dict[str, set[str]], str] | None:
    """``(candidates compared, dates of every name, taxonomy version)``, checked: the
    baseline has grades, is not among the candidates, every candidate has grades, and the
    grades share one version. None when the window holds no grade at all."""
    days = conn.execute(
        f"SELECT DISTINCT candidate, traffic_date FROM {relation} WHERE {where}", params
    ).fetchall()
    if not days:
        return None
    dates_of: dict[str, set[str]] = {}
    for name, day in days:
        dates_of.setdefault(str(name), set()).add(str(day))
    if baseline not in dates_of:
        raise ValueError(f"baseline {baseline!r} has no judge_grades: replay and grade it first")
    if candidates and baseline in candidates:
        raise ValueError(f"candidate {baseline!r} is the baseline; compare it with another one")
    names = list(candidates) if candidates else sorted(set(dates_of) - {baseline})
    taxonomy_version, _ = grade_versions(
        conn,
        relation,
        f"{where} AND candidate IN ({_placeholders(len(names) + 1)})",
        [*params, *names, baseline],
        "comparison",
    )
    for name in names:
        if name not in dates_of:
            raise ValueError(f"candidate {name!r} has no judge_grades")
    return names, dates_of, taxonomy_version


def comparison_from_relation(
    conn: duckdb.DuckDBPyConnection,
    relation: str,
    categories: list[tuple[str, str]],
    *,
    baseline: str,
    alpha: float = 0.1,
    level: float = 0.95,
    candidates: list[str] | None = None,
    bh: bool = False,
    date_from: str | None = None,
    date_to: str | None = None,
    served_by_others: Collection[str] = (),
) -> pd.DataFrame:
    """Every candidate (but the baseline) against the baseline, one row per category.

    ``relation`` is a table of grade rows in ``conn`` (the warehouse's ``judge_grades``).
    Pools all dates both arms share within ``[date_from, date_to]`` (inclusive, either
    open); refuses grades of mixed versions. ``served_by_others``: days another model than
    the baseline served production; ``production`` is compared on the other days only, so its
    rows measure resampling fidelity (``fidelity_error``). With several samples of a prefix
    the p-value and intervals treat the prefix as the unit (``stats.compare``).
    """
    check_window(date_from, date_to)
    where, params = _window_sql(date_from, date_to)
    checked = _compared_names(
        conn, relation, baseline=baseline, candidates=candidates, where=where, params=params
    )
    if checked is None:
        return pd.DataFrame()
    names, dates_of, taxonomy_version = checked
    sums = paired_sums(
        conn,
        relation,
        baseline=baseline,
        candidates=names,
        where=where,
        params=params,
        served_by_others=served_by_others,
    )
    frames = []
    for name in names:
        dates = sorted(dates_of[name] & dates_of[baseline])
        if name == PRODUCTION:
            dates = [d for d in dates if d not in set(served_by_others)]
        mine = (
            sums.loc[name]
            if name in sums.index.get_level_values(0)
            else sums.iloc[0:0].droplevel(0)
        )
        frame = _comparison_rows(mine, categories, alpha=alpha, level=level, bh=bh)
        frame.insert(0, "candidate", name)
        frame.insert(1, "baseline", baseline)
        frame.insert(4, "dates", ",".join(dates))
        frame["taxonomy_version"] = taxonomy_version
        frame["fidelity_error"] = (
            fidelity_errors(frame) if name == PRODUCTION else pd.Series(math.nan, frame.index)
        )
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# The columns of one candidate x day x category row of :func:`comparison_by_day`.
BY_DAY_COLUMNS = [
    "candidate",
    "baseline",
    "traffic_date",
    "category",
    "family",
    "n_paired",
    "n_graded",
    "n_flagged",
    "rate_per_100k",
    "ci_low_per_100k",
    "ci_high_per_100k",
    "baseline_n_graded",
    "baseline_n_flagged",
    "baseline_rate_per_100k",
    "baseline_ci_low_per_100k",
    "baseline_ci_high_per_100k",
    "rate_ratio",
    "ci_low_ratio",
    "ci_high_ratio",
    "p_value",
    "ci_level",
    "taxonomy_version",
]


def comparison_by_day(
    conn: duckdb.DuckDBPyConnection,
    relation: str,
    categories: list[tuple[str, str]],
    *,
    baseline: str,
    level: float = 0.95,
    candidates: list[str] | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
    served_by_others: Collection[str] = (),
) -> pd.DataFrame:
    """One row per candidate x day x category: the comparison of that day's shared prefixes.

    The same pairing, counts and statistics as :func:`comparison_from_relation` (one GROUP BY
    with the day added), one day at a time instead of pooled: both arms' rates with their
    intervals, the ratio with its interval and the two-sided p. Days a candidate shares no
    scored prefix with the baseline have no rows; on a day that has some, every category has
    its row (zero counts included). The p-values are per day, for looking, not for calling
    changes: the pooled comparison decides, and a day's small sample rarely can.
    """
    check_window(date_from, date_to)
    where, params = _window_sql(date_from, date_to)
    checked = _compared_names(
        conn, relation, baseline=baseline, candidates=candidates, where=where, params=params
    )
    if checked is None:
        return pd.DataFrame(columns=pd.Index(BY_DAY_COLUMNS))
    names, _, taxonomy_version = checked
    sums = paired_sums(
        conn,
        relation,
        baseline=baseline,
        candidates=names,
        where=where,
        params=params,
        served_by_others=served_by_others,
        by_day=True,
    )
    frames = []
    pairs = dict.fromkeys(zip(sums.index.get_level_values(0), sums.index.get_level_values(1),
                              strict=True))
    rank = {name: i for i, name in enumerate(names)}
    for name, day in sorted(pairs, key=lambda key: (rank[str(key[0])], str(key[1]))):
        frame = _comparison_rows(
            sums.xs((name, day), level=["candidate", "traffic_date"]),
            categories,
            alpha=0.05,  # unused here: no change is called per day
            level=level,
            bh=False,
        )
        frame["candidate"] = name
        frame["baseline"] = baseline
        frame["traffic_date"] = str(day)
        frame["taxonomy_version"] = taxonomy_version
        frames.append(frame.loc[:, BY_DAY_COLUMNS])
    if not frames:
        return pd.DataFrame(columns=pd.Index(BY_DAY_COLUMNS))
    return pd.concat(frames, ignore_index=True)


def build_comparison(
    grades: pd.DataFrame,
    categories: list[tuple[str, str]],
    *,
    baseline: str,
    alpha: float = 0.1,
    level: float = 0.95,
    candidates: list[str] | None = None,
    bh: bool = False,
    date_from: str | None = None,
    date_to: str | None = None,
    served_by_others: Collection[str] = (),
) -> pd.DataFrame:
    """:func:`comparison_from_relation` on a frame of grade rows (the same SQL, in memory)."""
    check_window(date_from, date_to)
    if grades.empty:
        return pd.DataFrame()
    with frame_relation(grades) as (conn, relation):
        return comparison_from_relation(
            conn,
            relation,
            categories,
            baseline=baseline,
            alpha=alpha,
            level=level,
            candidates=candidates,
            bh=bh,
            date_from=date_from,
            date_to=date_to,
            served_by_others=served_by_others,
        )
