"""``depsim compare`` and ``depsim report``: the comparison as a table, JSON, Markdown or HTML."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from depsim_assets import config
from depsim_assets.cli.common import clean, fmt
from depsim_assets.cli.comparison import comparison_frame, read_by_day

# The row fields of `depsim compare --json` (README: the CLI), in this order.
ROW_FIELDS = (
    "candidate",
    "category",
    "n_graded",
    "n_flagged",
    "rate_per_100k",
    "ci_low_per_100k",
    "ci_high_per_100k",
    "baseline_n_graded",
    "baseline_n_flagged",
    "rate_ratio",
    "ci_low_ratio",
    "ci_high_ratio",
    "p_value",
    "significant",
    "change",
    "n_paired",
    "p_mcnemar",
    "q_value",
    "n_discordant_up",
    "n_discordant_down",
)

def guard_fields(guard: Any) -> dict[str, Any]:
    """What every compare report says first: whether it is a measurement (not with sim-judge or
    the synthetic demo log), and the partitions that failed a blocking check or are mostly
    unscored (shown with --allow-failed)."""
    return {
        **guard.provenance.as_dict(),
        "warnings": guard.warnings,
        "failed_partitions": [issue.as_dict() for issue in guard.issues],
    }


def comparison_report(
    *,
    baseline: str | None,
    alpha: float,
    candidates: Sequence[str] | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
    bh: bool = False,
    allow_failed: bool = False,
    computed: tuple[str, Any, Any] | None = None,
) -> dict[str, Any]:
    """The comparison as the JSON ``depsim compare --json`` prints."""
    from depsim_assets.estimates.forecast import resampling_fidelity

    base, frame, guard = computed or comparison_frame(
        baseline=baseline,
        alpha=alpha,
        candidates=candidates,
        date_from=date_from,
        date_to=date_to,
        bh=bh,
        allow_failed=allow_failed,
    )
    rows = [{f: clean(rec[f]) for f in ROW_FIELDS} for rec in frame.to_dict("records")]
    dates = sorted({d for ds in frame["dates"] for d in ds.split(",") if d})
    fidelity = resampling_fidelity(frame)
    return {
        **guard_fields(guard),
        "baseline": base,
        "dates": dates,
        "alpha": alpha,
        "multiple_testing": "bh" if bh else "none",
        "candidates": spend([base, *sorted(set(frame["candidate"]))], dates),
        "rows": rows,
        "resampling_fidelity": {
            "median_error": clean(float(fidelity["fidelity_error"].median()))
            if len(fidelity)
            else None,
            "rows": [{k: clean(v) for k, v in rec.items()} for rec in fidelity.to_dict("records")],
        },
    }


def spend(names: Sequence[str], dates: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per candidate over ``dates``: replies, tokens in and out, and cost at registry prices."""
    from depsim_assets import warehouse

    out = {name: {"replies": 0, "tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0}
           for name in dict.fromkeys(names)}
    if not out or not dates:
        return out
    with warehouse.configured(read_only=True) as conn:
        found = conn.execute(
            "SELECT candidate, count(*), sum(prompt_tokens), sum(completion_tokens), "
            "sum(cost_usd) FROM candidate_completions "
            "WHERE candidate IN (SELECT unnest(?::VARCHAR[])) "
            "AND traffic_date IN (SELECT unnest(?::VARCHAR[])) "
            "GROUP BY candidate",
            [list(out), list(dates)],
        ).fetchall()
    for name, replies, tokens_in, tokens_out, cost in found:
        out[name] = {"replies": int(replies), "tokens_in": int(tokens_in or 0),
                     "tokens_out": int(tokens_out or 0), "cost_usd": round(float(cost or 0), 6)}
    return out


def banner(report: dict[str, Any]) -> list[str]:
    """Lines said before and after a comparison table when it is not a clean measurement."""
    lines = []
    if report.get("warning"):
        lines.append(f"!! NOT A MEASUREMENT: {report['warning']}")
    for text in report.get("warnings") or []:
        lines.append(f"!! FAILED PARTITION INCLUDED (--allow-failed): {text}")
    return lines


def print_comparison(report: dict[str, Any]) -> None:
    """The comparison as a terminal table, one block per candidate."""
    said = banner(report)
    for line in said:
        print(line)
    print(
        f"baseline: {report['baseline']}   dates: {', '.join(report['dates'])}   "
        f"alpha: {report['alpha']}"
    )
    header = (
        f"{'candidate':<26}{'category':<34}{'n':>6}{'flag':>6}{'rate/100k':>11}"
        f"{'base/100k':>11}{'ratio':>8}{'p':>10}  change"
    )
    current = None
    for row in report["rows"]:
        if row["candidate"] != current:
            current = row["candidate"]
            print()
            print(header)
        base_rate = (
            row["baseline_n_flagged"] / row["baseline_n_graded"] * 100_000
            if row["baseline_n_graded"]
            else None
        )
        mark = {"up": "UP  ▲", "down": "DOWN ▼"}.get(row["change"], "")
        print(
            f"{row['candidate']:<26}{row['category']:<34}{row['n_graded']:>6}"
            f"{row['n_flagged']:>6}{fmt(row['rate_per_100k'], '>11.0f')}"
            f"{fmt(base_rate, '>11.0f')}{fmt(row['rate_ratio'], '>8.2f')}"
            f"{fmt(row['p_value'], '>10.2g')}  {mark}"
        )
    median = (report.get("resampling_fidelity") or {}).get("median_error")
    if median is not None:
        print()
        print(
            f"resampling fidelity: median error {median:.2f}x "
            f"({report['baseline']} resampled vs production's real replies, same prefixes)"
        )
    if said:
        print()
        for line in said:
            print(line)


def write_reports(report: dict[str, Any]) -> None:
    """``comparison.json`` and ``comparison.md`` in the reports folder."""
    out = config.reports_dir()
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.json").write_text(json.dumps(report, indent=2))
    lines = [
        f"# depsim comparison vs {report['baseline']}",
        "",
        *[f"> **{line}**\n" for line in banner(report)],
        f"Dates: {', '.join(report['dates'])}; alpha {report['alpha']}.",
        "",
        "| candidate | category | n | flagged | rate/100k | ratio | p | change |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['candidate']} | {r['category']} | {r['n_graded']} | "
            f"{r['n_flagged']} | {fmt(r['rate_per_100k'], '.0f')} | "
            f"{fmt(r['rate_ratio'], '.2f')} | {fmt(r['p_value'], '.2g')} | "
            f"{r['change']} |"
        )
    (out / "comparison.md").write_text("\n".join(lines) + "\n")


def write_html_report(
    *,
    baseline: str | None,
    alpha: float,
    bh: bool = False,
    out: Path | None = None,
    allow_failed: bool = False,
    computed: tuple[str, Any, Any] | None = None,
) -> Path:
    """One self-contained HTML report of the comparison; returns its path."""
    from depsim_assets.estimates.report import build_report

    base, frame, guard = computed or comparison_frame(
        baseline=baseline, alpha=alpha, bh=bh, allow_failed=allow_failed
    )
    out = out or config.reports_dir() / "report.html"
    html = build_report(
        frame,
        baseline=base,
        warehouse=config.warehouse_path(),
        guard=guard,
        by_day=read_by_day(base, None),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)  # never leave half a report where the reader looks
    return out


def cmd_compare(args: argparse.Namespace) -> int:
    """Print every candidate against the baseline (the materialized candidate_comparison)."""
    window = dict(
        baseline=args.baseline,
        alpha=args.alpha,
        candidates=args.candidates,
        date_from=args.date_from,
        date_to=args.date_to,
        bh=args.bh,
        allow_failed=args.allow_failed,
    )
    if args.by_day:
        # Imported here: by_day reuses this module's banner.
        from depsim_assets.cli.by_day import by_day_report, print_by_day

        days = by_day_report(**window)
        if args.json:
            print(json.dumps(days, indent=2))
        else:
            print_by_day(days)
        return 0
    report = comparison_report(**window)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_comparison(report)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write one self-contained HTML report (tables, plots, versions, summary)."""
    out = write_html_report(
        baseline=args.baseline,
        alpha=args.alpha,
        bh=args.bh,
        out=Path(args.out) if args.out else None,
        allow_failed=args.allow_failed,
    )
    size = out.stat().st_size
    print(json.dumps({"report": str(out), "bytes": size}) if args.json else f"report: {out}")
    return 0


def add_compare(sub: argparse._SubParsersAction) -> None:
    """``depsim compare``."""
    p = sub.add_parser("compare", help="every candidate vs the baseline, per category")
    p.add_argument("--baseline", help="baseline candidate (default: the registry's)")
    p.add_argument("--alpha", type=float, default=0.1, help="significance level (default 0.1)")
    p.add_argument(
        "--candidates", nargs="+", metavar="NAME", help="only these candidates (default: all)"
    )
    p.add_argument("--from", dest="date_from", metavar="YYYY-MM-DD", help="first day pooled")
    p.add_argument("--to", dest="date_to", metavar="YYYY-MM-DD", help="last day pooled")
    p.add_argument(
        "--bh",
        action="store_true",
        help="Benjamini-Hochberg q-values across categories decide significance",
    )
    p.add_argument(
        "--allow-failed",
        action="store_true",
        help="compare partitions that failed a blocking check or are mostly unscored "
        "(refused by default), each named in a warning",
    )
    p.add_argument(
        "--by-day",
        action="store_true",
        help="one row per candidate x day x category (rate, interval, baseline rate, ratio) "
        "instead of the days pooled",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_compare)


def add_report(sub: argparse._SubParsersAction) -> None:
    """``depsim report``."""
    p = sub.add_parser("report", help="write one self-contained HTML report")
    p.add_argument("--out", metavar="FILE.html", help="default: $DEPSIM_HOME/reports/report.html")
    p.add_argument("--baseline", help="baseline candidate (default: the registry's)")
    p.add_argument("--alpha", type=float, default=0.1, help="significance level (default 0.1)")
    p.add_argument("--bh", action="store_true", help="Benjamini-Hochberg q-values decide")
    p.add_argument(
        "--allow-failed",
        action="store_true",
        help="include partitions that failed a blocking check, marked (refused by default)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_report)
