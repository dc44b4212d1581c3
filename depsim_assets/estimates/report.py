"""One self-contained HTML report: summary, tables, plots (inline PNG), versions.

Everything it shows comes from the warehouse (read-only) and the comparison frame the CLI
computes; plots are embedded as ``data:image/png;base64`` URIs so the file can be mailed or
attached to a release ticket and opened anywhere, offline.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import math
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from depsim_assets.estimates.forecast import SUMMARY, resampling_fidelity
from depsim_assets.estimates.guard import Guard
from depsim_assets.estimates.plots import (
    forest_plot,
    funnel_plot,
    predicted_vs_realised,
    trend_plot,
)
from depsim_assets.warehouse import configured, warehouse_url
from depsim_assets.warehouse import connection as warehouse_connection

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.8em; margin: 0.5em 0 1em; }
.wide { overflow-x: auto; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: right; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; }
tr.up td { background: #fdecea; } tr.down td { background: #e8f1fb; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.summary li { margin: 0.3em 0; } .muted { color: #777; font-size: 0.85em; }
.banner { border: 3px solid #b00020; background: #fff0f0; color: #600; padding: 0.6em 1em;
  font-weight: bold; margin: 1em 0; }
.banner ul { margin: 0.3em 0 0; font-weight: normal; }
"""


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return html.escape(str(value))


def _table(frame: pd.DataFrame, columns: list[str], *, mark: str | None = None) -> str:
    if frame.empty:
        return "<p class='muted'>no rows</p>"
    head = "".join(
        f"<th class='l'>{html.escape(c)}</th>" if i == 0 else f"<th>{html.escape(c)}</th>"
        for i, c in enumerate(columns)
    )
    body = []
    for rec in frame.to_dict("records"):
        cls = f" class='{html.escape(str(rec.get(mark)))}'" if mark else ""
        cells = "".join(
            f"<td class='l'>{_cell(rec.get(c))}</td>" if i == 0 else f"<td>{_cell(rec.get(c))}</td>"
            for i, c in enumerate(columns)
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<div class='wide'><table><tr>{head}</tr>{''.join(body)}</table></div>"


def _read(path: Path, sql: str) -> pd.DataFrame:
    try:
        with _connection(path) as conn:
            return conn.execute(sql).df()
    except duckdb.CatalogException:  # a table not materialized yet: nothing to show
        return pd.DataFrame()


def _connection(path: Path) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
    """The warehouse read: Postgres when ``$DEPSIM_WAREHOUSE_URL`` is set, else ``path``."""
    if warehouse_url() is not None:
        return configured(read_only=True)
    return warehouse_connection(path, read_only=True)


def summary_lines(comparison: pd.DataFrame, baseline: str) -> list[str]:
    """Plain-language sentences: what changed, per candidate, against the baseline."""
    lines = []
    for name in dict.fromkeys(comparison["candidate"]):
        if name == "production":
            continue
        sub = comparison.loc[comparison["candidate"] == name]
        n = int(sub["n_graded"].max()) if len(sub) else 0
        parts = []
        for direction, word in (("up", "more often"), ("down", "less often")):
            moved = sub.loc[sub["change"] == direction].sort_values("rate_ratio", ascending=False)
            if len(moved):
                items = ", ".join(
                    f"{r['category'].replace('_', ' ')} ({r['rate_ratio']:.2g}x)"
                    for r in moved.to_dict("records")
                )
                parts.append(f"<b>{word}</b>: {html.escape(items)}")
        unchanged = int((sub["change"] == "none").sum())
        verdict = "; ".join(parts) if parts else "no category changed by 1.5x or more"
        lines.append(
            f"<b>{html.escape(name)}</b> vs {html.escape(baseline)} on {n:,} shared replies: "
            f"{verdict}. {unchanged} of {len(sub)} categories show no significant change of "
            "1.5x or more."
        )
    return lines


def banner(guard: Guard | None) -> str:
    """The red box at the top of the report: not a measurement, and partitions that failed
    their checks but were included (``--allow-failed``); empty when there is nothing to say."""
    if guard is None:
        return ""
    parts = []
    if guard.provenance.warning:
        parts.append(
            "<div class='banner' id='not-a-measurement'>Not a measurement: "
            f"{html.escape(guard.provenance.warning)}.</div>"
        )
    if guard.issues:
        items = "".join(f"<li>{html.escape(text)}</li>" for text in guard.warnings)
        parts.append(
            "<div class='banner' id='failed-partitions'>Included although they failed a "
            f"blocking check or are mostly unscored (--allow-failed):<ul>{items}</ul></div>"
        )
    return "".join(parts)


def build_report(
    comparison: pd.DataFrame,
    *,
    baseline: str,
    warehouse: Path,
    guard: Guard | None = None,
    by_day: pd.DataFrame | None = None,
) -> str:
    """The whole report as one HTML string; ``guard`` (from ``guard.guard_comparison``) puts
    its warnings in a banner at the top; ``by_day`` (``candidate_comparison_by_day`` rows of
    the same run) adds the day-by-day section and its small-multiples plot."""
    alpha = float(comparison["alpha"].iloc[0])
    testing = str(comparison["multiple_testing"].iloc[0])
    fidelity = resampling_fidelity(comparison)
    forecast = _read(warehouse, "SELECT * FROM forecast_validation")
    versions = _read(
        warehouse,
        "SELECT taxonomy_version, judge_prompt_version, judge_model, count(*) AS grades"
        " FROM judge_grades GROUP BY taxonomy_version, judge_prompt_version, judge_model"
        " ORDER BY grades DESC, 1, 2, 3",
    )
    sizes = _read(
        warehouse,
        # min(): one model/endpoint of the partition, as any_value() would pick, in SQL that
        # Postgres 15 also reads (it has no any_value, nor GROUP BY ALL).
        "SELECT candidate, traffic_date, count(*) AS replies,"
        " count(*) FILTER (WHERE status = 'ok') AS ok, min(model) AS model,"
        " min(endpoint) AS endpoint"
        " FROM candidate_completions GROUP BY candidate, traffic_date"
        " ORDER BY candidate, traffic_date",
    )
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<title>depsim report</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>depsim: Deployment Simulation report</h1>",
        banner(guard),
        f"<p class='muted'>generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; "
        f"baseline {html.escape(baseline)}; alpha {alpha:g}; "
        f"{'Benjamini-Hochberg q-values' if testing == 'bh' else 'raw Fisher p-values'} "
        "decide significance; a change needs significance AND a ratio of 1.5x or more.</p>",
        "<h2>What changed</h2><ul class='summary'>",
        *[f"<li>{line}</li>" for line in summary_lines(comparison, baseline)],
    ]
    if len(fidelity):
        med = float(fidelity["fidelity_error"].median())
        parts.append(
            f"<li>The simulation itself distorts rates by a median factor of {med:.2f}x "
            f"(the production model resampled vs its real replies on the same prefixes).</li>"
        )
    fsum = forecast.loc[forecast["category"] == SUMMARY] if len(forecast) else forecast
    for rec in fsum.to_dict("records"):
        acc = rec["direction_correct"]
        acc_txt = "no category moved 1.5x" if _nan(acc) else f"direction right in {acc:.0%}"
        sig = rec.get("direction_correct_significant")
        sig_txt = (
            ""
            if _nan(sig)
            else f" (right in {sig:.0%} of those whose move is also significant, i.e. not noise)"
        )
        parts.append(
            f"<li>Forecast check for <b>{html.escape(rec['candidate'])}</b>, deployed "
            f"{html.escape(rec['deployed_dates'])}: median error {rec['multiplicative_error']:.2f}x"
            f" between prediction and what happened; {acc_txt} of the categories that moved "
            f"1.5x or more{sig_txt}.</li>"
        )
    parts.append("</ul>")

    if by_day is not None and len(by_day):
        days = sorted(set(by_day["traffic_date"]))
        parts.append("<h2>Day by day</h2>")
        parts.append(
            "<p>Each category's rate per 100k on each day, every candidate against the "
            f"baseline ({html.escape(baseline)}: black line, grey band = its interval) on the "
            f"same prefixes, {html.escape(days[0])} to {html.escape(days[-1])}. A day's "
            "interval is wide; a change is called on the pooled days below, not per day.</p>"
        )
        parts.append(_img(trend_plot(by_day), "rate per 100k by day, per category"))
    parts.append("<h2>Rate ratios</h2>")
    parts.append(_img(forest_plot(comparison), "forest plot of rate ratios"))
    for family in dict.fromkeys(comparison["family"]):
        parts.append(_img(funnel_plot(comparison, family), f"funnel plot {family}"))
    cols = [
        "category",
        "n_graded",
        "n_flagged",
        "rate_per_100k",
        "ci_low_per_100k",
        "ci_high_per_100k",
        "baseline_rate_per_100k",
        "rate_ratio",
        "ci_low_ratio",
        "ci_high_ratio",
        "p_value",
        "p_mcnemar",
        "q_value",
        "change",
    ]
    for name in dict.fromkeys(comparison["candidate"]):
        sub = comparison.loc[comparison["candidate"] == name]
        title = "production (realised) vs the baseline" if name == "production" else name
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts.append(
            f"<p class='muted'>dates {html.escape(str(sub['dates'].iloc[0]))}; "
            f"{int(sub['n_paired'].max()):,} shared prefixes</p>"
        )
        parts.append(_table(sub, cols, mark="change"))

    parts.append("<h2>Resampling fidelity</h2>")
    parts.append(
        "<p>max(simulated / realised, realised / simulated) of Jeffreys-smoothed rates, per "
        "category: 1.0 means the simulation reproduces the real rate.</p>"
    )
    parts.append(
        _table(
            fidelity,
            ["category", "n_paired", "simulated_per_100k", "realised_per_100k", "fidelity_error"],
        )
    )

    parts.append("<h2>Forecast validation</h2>")
    if len(forecast):
        parts.append(_img(predicted_vs_realised(forecast), "predicted vs realised"))
        parts.append(
            _table(
                forecast,
                [
                    "category",
                    "candidate",
                    "predicted_per_100k",
                    "realised_per_100k",
                    "previous_per_100k",
                    "multiplicative_error",
                    "realised_change",
                    "predicted_direction",
                    "realised_direction",
                    "direction_correct",
                    "realised_change_p",
                    "direction_correct_significant",
                    "nll",
                ],
            )
        )
    else:
        parts.append("<p class='muted'>no shipped candidate (deployed_on) to validate yet</p>")

    parts.append("<h2>Versions and sample sizes</h2>")
    parts.append(_table(versions, list(versions.columns)) if len(versions) else "")
    parts.append(_table(sizes, list(sizes.columns)) if len(sizes) else "")
    parts.append("</body></html>")
    return "\n".join(parts)


def _nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
