"""Rates and comparisons from grade rows (pandas in, pandas out; no Dagster)."""

from __future__ import annotations

import pandas as pd

from depsim_assets.estimates.stats import compare, jeffreys_interval, rate_per_100k

PER = 100_000


class VersionMixError(ValueError):
    """Grades made under different taxonomy or judge-prompt versions were asked to be pooled."""


def single_version(grades: pd.DataFrame, what: str) -> tuple[str, str]:
    """The one (taxonomy, judge prompt) version of ``grades``; refuse to mix two."""
    scored = grades[grades["status"] == "scored"] if len(grades) else grades
    source = scored if len(scored) else grades
    versions = source[["taxonomy_version", "judge_prompt_version"]].drop_duplicates()
    if len(versions) > 1:
        found = ", ".join(f"{t}/{p}" for t, p in versions.itertuples(index=False))
        raise VersionMixError(
            f"{what}: grades from more than one taxonomy/judge-prompt version ({found}); "
            "re-materialize judge_grades for every partition compared so they share one version"
        )
    if versions.empty:
        return ("", "")
    row = versions.iloc[0]
    return (str(row["taxonomy_version"]), str(row["judge_prompt_version"]))


def rates_from_grades(
    grades: pd.DataFrame, categories: list[tuple[str, str]], *, level: float = 0.95
) -> pd.DataFrame:
    """One row per category: replies, graded, flagged, unscored, rate and Jeffreys interval.

    ``categories`` is ``[(id, family)]`` so a category nobody flagged still gets its row.
    """
    rows = []
    for cid, family in categories:
        sub = grades[grades["category"] == cid]
        scored = sub[sub["status"] == "scored"]
        graded = len(scored)
        flagged = int(scored["flagged"].astype(bool).sum())
        low, high = jeffreys_interval(flagged, graded, level)
        rows.append(
            {
                "category": cid,
                "family": family,
                "n_replies": len(sub),
                "graded": graded,
                "flagged": flagged,
                "unscored": len(sub) - graded,
                "rate_per_100k": rate_per_100k(flagged, graded),
                "ci_low_per_100k": low * PER,
                "ci_high_per_100k": high * PER,
                "ci_level": level,
            }
        )
    return pd.DataFrame(rows)


def paired_counts(cand: pd.DataFrame, base: pd.DataFrame) -> pd.DataFrame:
    """Per category: counts of each arm restricted to prefixes scored in both arms.

    Prefixes are (traffic_date, conversation_id); a candidate with several samples per prefix
    contributes all of them. Simulation vs simulation on the same prefixes cancels the bias
    the pipeline itself adds.
    """
    key = ["traffic_date", "conversation_id", "category"]
    # Scored rows always carry a flag; as bool the sums below are plain integer counts.
    c = cand[cand["status"] == "scored"].astype({"flagged": bool})
    b = base[base["status"] == "scored"].astype({"flagged": bool})
    shared = c[key].drop_duplicates().merge(b[key].drop_duplicates(), on=key)
    c = c.merge(shared, on=key)
    b = b.merge(shared, on=key)
    out = shared.groupby("category").size().rename("n_paired").to_frame()
    out["n_graded"] = c.groupby("category").size()
    out["n_flagged"] = c.groupby("category")["flagged"].sum()
    out["baseline_n_graded"] = b.groupby("category").size()
    out["baseline_n_flagged"] = b.groupby("category")["flagged"].sum()
    return out.fillna(0).astype(int)


def compare_frames(
    cand: pd.DataFrame,
    base: pd.DataFrame,
    categories: list[tuple[str, str]],
    *,
    alpha: float = 0.1,
    level: float = 0.95,
) -> pd.DataFrame:
    """One row per category: both arms' counts and rates, ratio, interval, Fisher p, change."""
    counts = paired_counts(cand, base)
    rows = []
    for cid, family in categories:
        got = counts.loc[cid] if cid in counts.index else None
        n, x = (int(got["n_graded"]), int(got["n_flagged"])) if got is not None else (0, 0)
        bn, bx = (
            (int(got["baseline_n_graded"]), int(got["baseline_n_flagged"]))
            if got is not None
            else (0, 0)
        )
        low, high = jeffreys_interval(x, n, level)
        result = compare(x, n, bx, bn, alpha=alpha, level=level)
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
                "rate_ratio": result.rate_ratio,
                "ci_low_ratio": result.ci_low_ratio,
                "ci_high_ratio": result.ci_high_ratio,
                "p_value": result.p_value,
                "alpha": alpha,
                "significant": result.significant,
                "change": result.change,
            }
        )
    return pd.DataFrame(rows)


def build_comparison(
    grades: pd.DataFrame,
    categories: list[tuple[str, str]],
    *,
    baseline: str,
    alpha: float = 0.1,
    level: float = 0.95,
    candidates: list[str] | None = None,
) -> pd.DataFrame:
    """Every candidate (but the baseline) against the baseline, one row per category.

    Pools all dates both arms share; refuses grades of mixed versions.
    """
    if grades.empty:
        return pd.DataFrame()
    base = grades[grades["candidate"] == baseline]
    if base.empty:
        raise ValueError(f"baseline {baseline!r} has no judge_grades: replay and grade it first")
    names = candidates or sorted(set(grades["candidate"]) - {baseline})
    taxonomy_version, _ = single_version(
        grades[grades["candidate"].isin([*names, baseline])], "comparison"
    )
    frames = []
    for name in names:
        cand = grades[grades["candidate"] == name]
        if cand.empty:
            raise ValueError(f"candidate {name!r} has no judge_grades")
        dates = sorted(set(cand["traffic_date"]) & set(base["traffic_date"]))
        frame = compare_frames(
            cand[cand["traffic_date"].isin(dates)],
            base[base["traffic_date"].isin(dates)],
            categories,
            alpha=alpha,
            level=level,
        )
        frame.insert(0, "candidate", name)
        frame.insert(1, "baseline", baseline)
        frame.insert(4, "dates", ",".join(dates))
        frame["taxonomy_version"] = taxonomy_version
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
