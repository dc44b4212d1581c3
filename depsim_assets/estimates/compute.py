"""Rates and comparisons from grade rows (pandas in, pandas out; no Dagster)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Collection

import pandas as pd

from depsim_assets.estimates.forecast import fidelity_errors
from depsim_assets.estimates.stats import (
    bh_qvalues,
    change_call,
    compare,
    jeffreys_interval,
    mcnemar_exact,
    rate_per_100k,
)

PER = 100_000
PRODUCTION = "production"  # the original replies (partitions.PRODUCTION, without Dagster)


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


SEVERITIES = range(5)


def in_window(frame: pd.DataFrame, date_from: str | None, date_to: str | None) -> pd.DataFrame:
    """Rows whose ``traffic_date`` lies in ``[date_from, date_to]`` (ISO strings; None = open)."""
    for label, value in (("--from", date_from), ("--to", date_to)):
        if value is not None:
            try:
                dt.date.fromisoformat(value)
            except ValueError:
                raise ValueError(f"{label} {value!r} is not a date (YYYY-MM-DD)") from None
    if date_from and date_to and date_from > date_to:
        raise ValueError(f"--from {date_from} is after --to {date_to}")
    if frame.empty:
        return frame
    keep = pd.Series(True, index=frame.index)
    if date_from:
        keep &= frame["traffic_date"] >= date_from
    if date_to:
        keep &= frame["traffic_date"] <= date_to
    return frame[keep]


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
        return pd.DataFrame(columns=["candidate", "category", "family", *count_cols])
    pooled = window.groupby(["candidate", "category", "family"], sort=False)[count_cols].sum()
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
        severity = scored["severity"].value_counts() if "severity" in scored else pd.Series()
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
                **{f"severity_{k}": int(severity.get(k, 0)) for k in SEVERITIES},
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
    # McNemar pairs: sample 0 of each arm on the same prefix, so each prefix is one pair even
    # when an arm drew several samples.
    pairs = c[c["sample_index"] == 0][[*key, "flagged"]].merge(
        b[b["sample_index"] == 0][[*key, "flagged"]], on=key, suffixes=("_c", "_b")
    )
    only_c = pairs["flagged_c"] & ~pairs["flagged_b"]
    only_b = pairs["flagged_b"] & ~pairs["flagged_c"]
    out["n_discordant_up"] = only_c.groupby(pairs["category"]).sum()
    out["n_discordant_down"] = only_b.groupby(pairs["category"]).sum()
    return out.fillna(0).astype(int)


def compare_frames(
    cand: pd.DataFrame,
    base: pd.DataFrame,
    categories: list[tuple[str, str]],
    *,
    alpha: float = 0.1,
    level: float = 0.95,
    bh: bool = False,
) -> pd.DataFrame:
    """One row per category: both arms' counts and rates, ratio, interval, Fisher p, change.

    Also the exact McNemar p on discordant pairs and the Benjamini-Hochberg q-value of the
    Fisher p across the categories; with ``bh`` the q-value, not p, decides significance.
    """
    counts = paired_counts(cand, base)
    rows = []
    for cid, family in categories:
        got = counts.loc[cid] if cid in counts.index else None
        up, down = (
            (int(got["n_discordant_up"]), int(got["n_discordant_down"]))
            if got is not None
            else (0, 0)
        )
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
    """Every candidate (but the baseline) against the baseline, one row per category.

    Pools all dates both arms share within ``[date_from, date_to]`` (inclusive, either
    open); refuses grades of mixed versions. ``served_by_others``: days another model than
    the baseline served production; ``production`` is compared on the other days only, so its
    rows measure resampling fidelity (``fidelity_error``).
    """
    grades = in_window(grades, date_from, date_to)
    if grades.empty:
        return pd.DataFrame()
    base = grades[grades["candidate"] == baseline]
    if base.empty:
        raise ValueError(f"baseline {baseline!r} has no judge_grades: replay and grade it first")
    if candidates and baseline in candidates:
        raise ValueError(f"candidate {baseline!r} is the baseline; compare it with another one")
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
        if name == PRODUCTION:
            dates = [d for d in dates if d not in set(served_by_others)]
        frame = compare_frames(
            cand[cand["traffic_date"].isin(dates)],
            base[base["traffic_date"].isin(dates)],
            categories,
            alpha=alpha,
            level=level,
            bh=bh,
        )
        frame.insert(0, "candidate", name)
        frame.insert(1, "baseline", baseline)
        frame.insert(4, "dates", ",".join(dates))
        frame["taxonomy_version"] = taxonomy_version
        frame["fidelity_error"] = (
            fidelity_errors(frame) if name == PRODUCTION else pd.Series(math.nan, frame.index)
        )
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
