"""``depsim compare --by-day``: every candidate against the baseline, per category, day by day."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from depsim_assets.cli.common import clean, fmt
from depsim_assets.cli.compare import banner, guard_fields
from depsim_assets.cli.comparison import comparison_frame, read_by_day
from depsim_assets.estimates.compute import BY_DAY_COLUMNS

# The row fields of `depsim compare --by-day --json`: one row per candidate x day x category,
# the per-day table's columns less those said once for the whole report.
BY_DAY_FIELDS = tuple(
    c for c in BY_DAY_COLUMNS if c not in {"baseline", "family", "ci_level", "taxonomy_version"}
)


def by_day_report(
    *,
    baseline: str | None,
    alpha: float,
    candidates: Sequence[str] | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
    bh: bool = False,
    allow_failed: bool = False,
) -> dict[str, Any]:
    """The comparison day by day, as ``depsim compare --by-day --json`` prints it.

    The same run (and guard) as the pooled comparison: its per-day table.
    """
    base, frame, guard = comparison_frame(
        baseline=baseline,
        alpha=alpha,
        candidates=candidates,
        date_from=date_from,
        date_to=date_to,
        bh=bh,
        allow_failed=allow_failed,
    )
    days = read_by_day(base, list(dict.fromkeys(frame["candidate"])) if candidates else None)
    rows = [{f: clean(rec[f]) for f in BY_DAY_FIELDS} for rec in days.to_dict("records")]
    return {
        **guard_fields(guard),
        "baseline": base,
        "dates": sorted(set(days["traffic_date"])),
        "ci_level": clean(float(days["ci_level"].iloc[0])) if len(days) else None,
        "rows": rows,
    }


def print_by_day(report: dict[str, Any]) -> None:
    """The per-day comparison as a terminal table: per candidate, each category's days."""
    said = banner(report)
    for line in said:
        print(line)
    level = report.get("ci_level") or 0.95
    print(f"baseline: {report['baseline']}   dates: {', '.join(report['dates'])}   "
          f"intervals: {level:.0%}")
    header = (
        f"{'category':<34}{'day':<12}{'n':>6}{'rate/100k':>11}{'interval':>17}"
        f"{'base/100k':>11}{'ratio':>8}{'p':>10}"
    )
    current = None
    for row in report["rows"]:
        if row["candidate"] != current:
            current = row["candidate"]
            print()
            print(f"{current} vs {report['baseline']}")
            print(header)
        interval = (
            f"{fmt(row['ci_low_per_100k'], '.0f')}-{fmt(row['ci_high_per_100k'], '.0f')}"
        )
        print(
            f"{row['category']:<34}{row['traffic_date']:<12}{row['n_graded']:>6}"
            f"{fmt(row['rate_per_100k'], '>11.0f')}{interval:>17}"
            f"{fmt(row['baseline_rate_per_100k'], '>11.0f')}{fmt(row['rate_ratio'], '>8.2f')}"
            f"{fmt(row['p_value'], '>10.2g')}"
        )
    if said:
        print()
        for line in said:
            print(line)
