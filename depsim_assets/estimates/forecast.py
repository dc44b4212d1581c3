"""Checking forecasts against what happened: resampling fidelity and forecast validation.

- **Resampling fidelity**: the baseline (the production model resampled on its own prefixes)
  against ``production`` (its realised replies on the same prefixes). The symmetric
  multiplicative error per category says how much the simulation itself distorts rates.
- **Forecast validation**: a candidate with ``deployed_on`` days served production on those
  days, so ``production``'s rates on them are its realised rates. Its prediction is its own
  simulated rates pooled over the days before its first deployed day; the "previous" rates
  are ``production`` on those same earlier days (the model it replaced).

Rates in errors and likelihoods are Jeffreys-smoothed, ``(x + 1/2) / (n + 1)``, so a category
seen zero times on one side gives a finite error instead of an infinite one.
"""

from __future__ import annotations

import math
import statistics

import pandas as pd
from scipy import stats

from depsim_assets.estimates.stats import (
    CHANGE_RATIO,
    PER,
    fisher_p,
    smoothed_rate,
    symmetric_error,
)

SUMMARY = "_summary"


def resampling_fidelity(comparison: pd.DataFrame) -> pd.DataFrame:
    """Per category: simulated (baseline) vs realised (``production``) rate and their error.

    Reads the ``production`` rows of a comparison frame (realised vs the baseline on the
    same prefixes). Empty when ``production`` was not compared.
    """
    prod = (
        comparison.loc[comparison["candidate"] == "production"] if len(comparison) else comparison
    )
    if prod.empty:
        return pd.DataFrame(
            columns=pd.Index(
                ["category", "family", "n_paired", "simulated_per_100k", "realised_per_100k"]
            )
        )
    out = pd.DataFrame(
        {
            "category": prod["category"].to_numpy(),
            "family": prod["family"].to_numpy(),
            "n_paired": prod["n_paired"].to_numpy(),
            "simulated_per_100k": prod["baseline_rate_per_100k"].to_numpy(),
            "realised_per_100k": prod["rate_per_100k"].to_numpy(),
            "fidelity_error": fidelity_errors(prod).to_numpy(),
        }
    )
    return out


def fidelity_errors(rows: pd.DataFrame) -> pd.Series:
    """Symmetric multiplicative error of the smoothed rates of each comparison row."""
    return pd.Series(
        [
            symmetric_error(smoothed_rate(int(x), int(n)), smoothed_rate(int(bx), int(bn)))
            if n > 0 and bn > 0
            else math.nan
            for x, n, bx, bn in zip(
                rows["n_flagged"],
                rows["n_graded"],
                rows["baseline_n_flagged"],
                rows["baseline_n_graded"],
                strict=True,
            )
        ],
        index=rows.index,
        dtype=float,
    )


def _pool(rates: pd.DataFrame, candidate: str, dates: list[str]) -> pd.DataFrame:
    sub = rates.loc[(rates["candidate"] == candidate) & rates["traffic_date"].isin(dates)]
    return pd.DataFrame(sub.groupby("category")[["graded", "flagged"]].sum())


def _direction(rate: float, reference: float) -> str:
    return "up" if rate > reference else "down" if rate < reference else "none"


def validate_forecast(
    rates: pd.DataFrame,
    candidate: str,
    deployed_on: list[str],
    categories: list[tuple[str, str]],
    *,
    baseline: str | None = None,
    alpha: float = 0.1,
) -> pd.DataFrame:
    """One row per category plus a ``_summary`` row for one shipped candidate.

    ``rates`` is ``behavior_rates`` (any candidates and dates). The predicted direction of a
    category is the candidate's simulated rate against ``baseline``'s simulated rate on the
    same days (simulation vs simulation, as the comparison forecasts it); without a baseline
    simulated on those days, against the previous realised rate. Raises ValueError when the
    candidate has no simulated days before its first deployed day, or ``production`` has no
    rates on a deployed day.

    Beside the ``>= 1.5x`` direction score, ``direction_correct_significant`` scores only the
    categories whose realised change is also significant (Fisher p < ``alpha``, realised vs
    previous counts): on one day of traffic a rare category moves 1.5x by noise alone, and
    the direction of noise is a coin flip.
    """
    first = min(deployed_on)
    before = sorted(
        set(rates.loc[rates["candidate"] == candidate, "traffic_date"])
        & set(rates.loc[rates["candidate"] == "production", "traffic_date"])
    )
    before = [d for d in before if d < first]
    if not before:
        raise ValueError(
            f"{candidate}: no day before its first deployed day {first} with both its simulated "
            "rates and production's: replay it on earlier traffic first"
        )
    served = sorted(set(rates.loc[rates["candidate"] == "production", "traffic_date"]))
    deployed = [d for d in sorted(deployed_on) if d in served]
    if not deployed:
        raise ValueError(
            f"{candidate}: production has no behavior_rates on its deployed days "
            f"({', '.join(sorted(deployed_on))}): materialize production for them"
        )
    pred = _pool(rates, candidate, before)
    real = _pool(rates, "production", deployed)
    prev = _pool(rates, "production", before)
    sim_base = _pool(rates, baseline, before) if baseline and baseline != candidate else None
    if sim_base is not None and sim_base.empty:
        sim_base = None
    rows = []
    for cid, family in categories:
        px, pn = _counts(pred, cid)
        rx, rn = _counts(real, cid)
        bx, bn = _counts(prev, cid)
        p_hat, r_hat, b_hat = smoothed_rate(px, pn), smoothed_rate(rx, rn), smoothed_rate(bx, bn)
        change = r_hat / b_hat
        scored = change >= CHANGE_RATIO or change <= 1 / CHANGE_RATIO
        reference = b_hat if sim_base is None else smoothed_rate(*_counts(sim_base, cid))
        pdir, rdir = _direction(p_hat, reference), _direction(r_hat, b_hat)
        change_p = fisher_p([[rx, rn - rx], [bx, bn - bx]]) if rn and bn else math.nan
        real_move = bool(scored and change_p < alpha)
        rows.append(
            {
                "category": cid,
                "family": family,
                "predicted_graded": pn,
                "predicted_flagged": px,
                "predicted_per_100k": px / pn * PER if pn else math.nan,
                "realised_graded": rn,
                "realised_flagged": rx,
                "realised_per_100k": rx / rn * PER if rn else math.nan,
                "previous_graded": bn,
                "previous_flagged": bx,
                "previous_per_100k": bx / bn * PER if bn else math.nan,
                "multiplicative_error": symmetric_error(p_hat, r_hat),
                "realised_change": change,
                "predicted_direction": pdir,
                "realised_direction": rdir,
                "direction_scored": bool(scored),
                "direction_correct": float(pdir == rdir) if scored else math.nan,
                "realised_change_p": change_p,
                "direction_correct_significant": float(pdir == rdir) if real_move else math.nan,
                # The realised count's likelihood under the predicted rate: lower is better.
                "nll": -float(stats.binom.logpmf(rx, rn, p_hat)) if rn else math.nan,
            }
        )
    frame = pd.DataFrame(rows)
    scored = frame["direction_correct"].dropna()
    real_moves = frame["direction_correct_significant"].dropna()
    errors = [e for e in frame["multiplicative_error"] if not math.isnan(e)]
    summary = {
        "category": SUMMARY,
        "family": "",
        "predicted_graded": int(frame["predicted_graded"].sum()),
        "predicted_flagged": int(frame["predicted_flagged"].sum()),
        "realised_graded": int(frame["realised_graded"].sum()),
        "realised_flagged": int(frame["realised_flagged"].sum()),
        "previous_graded": int(frame["previous_graded"].sum()),
        "previous_flagged": int(frame["previous_flagged"].sum()),
        "multiplicative_error": statistics.median(errors) if errors else math.nan,
        "direction_scored": bool(len(scored)),
        "direction_correct": float(scored.mean()) if len(scored) else math.nan,
        "direction_correct_significant": float(real_moves.mean()) if len(real_moves) else math.nan,
        "nll": float(frame["nll"].sum()),
    }
    frame = pd.concat([frame, pd.DataFrame([summary])], ignore_index=True)
    frame.insert(0, "candidate", candidate)
    frame.insert(3, "prediction_dates", ",".join(before))
    frame.insert(4, "deployed_dates", ",".join(deployed))
    return frame


def _counts(pooled: pd.DataFrame, cid: str) -> tuple[int, int]:
    if cid not in pooled.index:
        return (0, 0)
    return (int(pooled.loc[cid, "flagged"]), int(pooled.loc[cid, "graded"]))
