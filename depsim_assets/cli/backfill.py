"""``depsim backfill``: days x candidates as one Dagster backfill, run by the daemon."""

from __future__ import annotations

import argparse
import json
import sys

from depsim_assets import config
from depsim_assets.cli.instance import get_instance


def cmd_backfill(args: argparse.Namespace) -> int:
    """Submit days x candidates as one Dagster backfill; the daemon runs it in parallel."""
    from depsim_assets import backfills, runs
    from depsim_assets.registry import load_registry

    dates = backfills.date_range(args.start, args.end)
    registered = load_registry(config.registry_path()).names()
    if args.candidates is None:
        names = backfills.default_candidates(registered)
    else:
        names = [c.strip() for c in args.candidates.split(",") if c.strip()]
        unknown = [c for c in names if c not in registered and c != "production"]
        if unknown:
            raise ValueError(
                f"unknown candidates {', '.join(unknown)}; registered: {', '.join(registered)}"
            )
    instance = get_instance()
    runs.ensure_candidate_partitions(instance, [c for c in names if c != "production"])
    backfill_id = backfills.submit_backfill(
        instance, dates, names, traffic=not args.skip_traffic, title=args.title
    )
    say = sys.stderr if args.json else sys.stdout
    print(
        f"backfill {backfill_id}: {len(dates)} days ({dates[0]}..{dates[-1]}) x "
        f"{', '.join(names)}" + ("" if args.skip_traffic else " (+ traffic)"),
        file=say,
    )
    if not backfills.daemon_running(instance):
        print(
            "no Dagster daemon is running on this instance, so nothing runs yet: start "
            f"`depsim ui` (dagster dev runs one) or `DAGSTER_HOME={config.dagster_home()} "
            "dagster-daemon run -w workspace.yaml`",
            file=say,
        )
    if not args.wait:
        if args.json:
            print(json.dumps(backfills.backfill_status(instance, backfill_id).as_dict()))
        return 0

    def show(status: backfills.BackfillStatus) -> None:
        if not args.json:
            print(
                f"  {status.status}: {status.materialized}/{status.target} partitions, "
                f"{status.failed} failed, runs {status.runs}",
                flush=True,
            )

    final = backfills.wait_for_backfill(
        instance, backfill_id, timeout_s=args.timeout, poll_s=5.0, on_poll=show
    )
    if args.json:
        print(json.dumps(final.as_dict()))
    return 0 if final.status == "COMPLETED_SUCCESS" else 1


def add_backfill(sub: argparse._SubParsersAction) -> None:
    """``depsim backfill``."""
    p = sub.add_parser(
        "backfill",
        help="submit days x candidates as one Dagster backfill (the daemon runs it in parallel)",
        description=(
            "Stores one asset backfill on the instance, as the UI's Materialize > partition "
            "range does: traffic assets per day, then replay, grading and rates per candidate "
            "x day. The Dagster daemon (started by `depsim ui`, or `dagster-daemon run`) "
            "launches its runs, at most max_concurrent_runs at once (dagster.yaml)."
        ),
    )
    p.add_argument("--from", dest="start", required=True, metavar="YYYY-MM-DD")
    p.add_argument("--to", dest="end", required=True, metavar="YYYY-MM-DD")
    p.add_argument(
        "--candidates",
        metavar="A,B,C",
        help="comma-separated candidates (default: production and every registered one)",
    )
    p.add_argument(
        "--skip-traffic",
        action="store_true",
        help="do not re-sample the days (their traffic partitions are already materialized)",
    )
    p.add_argument("--title", help="backfill title shown in the UI")
    p.add_argument("--wait", action="store_true", help="poll until the backfill is finished")
    p.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds --wait waits (default 3600)"
    )
    p.add_argument("--json", action="store_true", help="print the backfill status as JSON")
    p.set_defaults(func=cmd_backfill)
