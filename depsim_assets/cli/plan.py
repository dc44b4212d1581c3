"""``depsim plan``: how much traffic a comparison needs, or what a given amount can detect."""

from __future__ import annotations

import argparse
import json

from depsim_assets.cli.common import clean, fmt


def _baseline_rates(
    date_from: str | None, date_to: str | None
) -> tuple[str, list[tuple[str, int, int]]]:
    """The baseline's (category, flagged, graded), pooled over the window, from the warehouse."""
    from depsim_assets import warehouse
    from depsim_assets.estimates.compute import aggregate_rates
    from depsim_assets.registry import load_registry

    base = load_registry().baseline_name()
    if not warehouse.exists():
        raise FileNotFoundError(
            f"{warehouse.location()}: no warehouse yet: give --base-rate-per-100k, or run "
            "`depsim demo` first"
        )
    with warehouse.configured(read_only=True) as conn:
        rates = conn.execute(
            "SELECT candidate, traffic_date, category, family, n_replies, graded, flagged,"
            " unscored FROM behavior_rates WHERE candidate = ?",
            [base],
        ).df()
    pooled = aggregate_rates(rates, date_from=date_from, date_to=date_to)
    if pooled.empty:
        raise ValueError(f"no behavior_rates of the baseline {base!r}: materialize it first")
    rows = [
        (str(r["category"]), int(r["flagged"]), int(r["graded"])) for r in pooled.to_dict("records")
    ]
    return base, rows


def cmd_plan(args: argparse.Namespace) -> int:
    """Replies per arm for a base rate and ratio, or detectable ratios at a given n."""
    from depsim_assets.estimates.planner import Design, detectable_ratio, n_per_arm, power_at

    test = "exact McNemar on paired prefixes" if args.paired else "Fisher exact, two arms"
    if args.n is None:
        if args.base_rate_per_100k is None or args.ratio is None:
            raise ValueError("give --base-rate-per-100k and --ratio (or --n for detectable ratios)")
        design = Design(args.base_rate_per_100k / 100_000, args.alpha, args.power, args.paired)
        n = n_per_arm(design, args.ratio)
        out = {
            "n_per_arm": n,
            "base_rate_per_100k": args.base_rate_per_100k,
            "ratio": args.ratio,
            "alpha": args.alpha,
            "power": args.power,
            "achieved_power": round(power_at(n, design, args.ratio), 4),
            "paired": args.paired,
            "test": test,
        }
        if args.json:
            print(json.dumps(out, indent=2))
        else:
            unit = "prefixes (pairs)" if args.paired else "graded replies per arm"
            print(
                f"{n:,} {unit} to detect {args.ratio:g}x at {args.base_rate_per_100k:g} per 100k "
                f"with power {args.power:g} at alpha {args.alpha:g} ({test})"
            )
        return 0
    if args.ratio is not None:
        raise ValueError("--ratio goes with the first form; with --n the ratio is the answer")
    if args.base_rate_per_100k is not None:
        baseline = None
        cats = [("(given)", args.base_rate_per_100k / 100_000)]
    else:
        baseline, counts = _baseline_rates(args.date_from, args.date_to)
        # A category never seen gets the Jeffreys-smoothed rate, not zero (zero is undetectable).
        cats = [(cid, (flagged + 0.5) / (graded + 1)) for cid, flagged, graded in counts]
    rows = []
    for cid, rate in cats:
        design = Design(rate, args.alpha, args.power, args.paired)
        up = detectable_ratio(args.n, design, up=True)
        down = detectable_ratio(args.n, design, up=False)
        rows.append(
            {
                "category": cid,
                "base_rate_per_100k": rate * 100_000,
                "min_ratio_up": clean(up),
                "max_ratio_down": clean(down) if down > 0 else None,
            }
        )
    out2 = {
        "n": args.n,
        "baseline": baseline,
        "alpha": args.alpha,
        "power": args.power,
        "paired": args.paired,
        "test": test,
        "rows": rows,
    }
    if args.json:
        print(json.dumps(out2, indent=2))
        return 0
    print(
        f"smallest detectable change with {args.n:,} per arm, power {args.power:g}, "
        f"alpha {args.alpha:g} ({test}); baseline {baseline or 'as given'}"
    )
    print(f"{'category':<34}{'base/100k':>11}{'up x':>10}{'down x':>10}")
    for r in rows:
        print(
            f"{r['category']:<34}{r['base_rate_per_100k']:>11.0f}"
            f"{fmt(r['min_ratio_up'], '>10.2f')}{fmt(r['max_ratio_down'], '>10.2f')}"
        )
    return 0


def add_plan(sub: argparse._SubParsersAction) -> None:
    """``depsim plan``."""
    p = sub.add_parser(
        "plan",
        help="replies per arm for a base rate and ratio, or detectable ratios at --n",
        description="Form 1: --base-rate-per-100k R --ratio X gives the replies needed per arm. "
        "Form 2: --n N gives, per category at the baseline's current rates (or at "
        "--base-rate-per-100k), the smallest ratio detectable either way.",
    )
    p.add_argument("--base-rate-per-100k", type=float, help="baseline rate per 100k replies")
    p.add_argument("--ratio", type=float, help="candidate rate / baseline rate to detect")
    p.add_argument("--n", type=int, help="replies per arm available (second form)")
    p.add_argument("--alpha", type=float, default=0.1, help="significance level (default 0.1)")
    p.add_argument("--power", type=float, default=0.8, help="target power (default 0.8)")
    p.add_argument(
        "--paired", action="store_true", help="plan for the McNemar test on the same prefixes"
    )
    p.add_argument("--from", dest="date_from", metavar="YYYY-MM-DD", help="rates window start")
    p.add_argument("--to", dest="date_to", metavar="YYYY-MM-DD", help="rates window end")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_plan)
