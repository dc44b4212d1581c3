"""``depsim demo``: a synthetic production log, the sim candidates, the whole graph, the
comparison; one command from a fresh clone.

The demo adds its command to the ``depsim`` CLI through the ``depsim.commands`` entry point
(pyproject.toml), so the product never imports its demo data: the CLI loads whatever
commands are registered there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import dagster as dg

from depsim_assets import config, warehouse
from depsim_assets.cli.compare import (
    comparison_report,
    print_comparison,
    write_html_report,
    write_reports,
)
from depsim_assets.cli.comparison import comparison_frame
from depsim_assets.cli.instance import get_instance

if TYPE_CHECKING:  # runs imports the whole graph: only when a command runs
    from depsim_assets import runs

# Dagster's console logger for the demo's runs. Not ERROR: Dagster logs a failed run at ERROR
# with its stack trace, and the user gets depsim's one-line error for it anyway; every event
# still reaches the instance (the UI's run page has the whole story).
QUIET = "CRITICAL"


def cmd_demo(args: argparse.Namespace) -> int:
    """Build the log if absent, register the sim candidates, materialize everything."""
    from tqdm import tqdm

    from depsim_assets import runs

    say = sys.stderr if args.json else sys.stdout
    dates, deploy_day, agentic_day = write_demo_logs(args, say)
    instance = get_instance()
    days = [*dates, deploy_day, *([agentic_day] if agentic_day else [])]
    window = claim_partition_window(instance, days)
    plan, names = demo_plan(args, dates, deploy_day, agentic_day)
    runs.ensure_candidate_partitions(instance, names)
    if not args.no_progress and sys.stderr.isatty():
        # Within each run, the call engine draws a bar of its requests under this one.
        os.environ["DEPSIM_PROGRESS_BAR"] = "1"
    with tqdm(
        total=len(plan), desc="materializing", unit="run", file=sys.stderr, disable=args.no_progress
    ) as bar:

        def advance(run: runs.PlannedRun) -> None:
            bar.set_postfix_str(run.label)
            bar.update(1)

        runs.execute(plan, instance, on_run=advance)
    html_report = print_demo_comparison(args, deploy_day, agentic_day)
    if not args.json:
        print()
        print(f"warehouse: {warehouse.location()}")
        print(f"report:    {config.reports_dir() / 'comparison.md'}")
        print(f"           {html_report}  (one self-contained HTML file: tables and plots)")
        if window is not None:
            print(f"days:      {window}")
        print(
            f"UI:        depsim ui   (or: DAGSTER_HOME={config.dagster_home()} "
            f"{sys.executable} -m dagster dev -w workspace.yaml)"
        )
    return 0


def write_demo_logs(args: argparse.Namespace, say: TextIO) -> tuple[list[str], str, str | None]:
    """The demo's synthetic log, written where missing: ``(chat days, deployment day,
    agentic day or None)``. Uses the public demo salt unless one is set."""
    from depsim_demo import registry as demo
    from depsim_demo.synth import write_agentic_day, write_demo_log

    if not os.environ.get(config.SALT_ENV):
        # The demo's synthetic log only: a fixed, public salt keeps it reproducible. Every
        # other way to sample refuses to run without a secret one.
        os.environ[config.SALT_ENV] = config.DEMO_SALT
    dates = demo.demo_dates(args.end_date, args.days)
    deploy_day = demo.deployment_date(dates)
    agentic_day = demo.agentic_date(dates) if args.agentic_per_day > 0 else None
    root = config.log_root()
    missing = [d for d in [*dates, deploy_day] if not (root / d).exists()]
    if missing:
        print(f"writing synthetic production log for {', '.join(missing)} under {root}", file=say)
        write_demo_log(
            root,
            missing,
            per_day=args.per_day,
            seed=args.seed,
            production_model_by_date={deploy_day: demo.DEPLOYED_CANDIDATE},
        )
    if agentic_day is not None and not (root / agentic_day).exists():
        print(f"writing the agentic day {agentic_day} ({args.agentic_per_day} conversations "
              f"that declare tools) under {root}", file=say)
        write_agentic_day(root, agentic_day, n=args.agentic_per_day, seed=args.seed)
    return dates, deploy_day, agentic_day


def demo_plan(
    args: argparse.Namespace, dates: list[str], deploy_day: str, agentic_day: str | None
) -> tuple[list[runs.PlannedRun], list[str]]:
    """The demo's runs, in order (traffic, candidate-days, the comparison last), and the
    candidates it registered. ``scripts/cluster.sh`` runs the same plan on Celery workers."""
    from depsim_assets import runs
    from depsim_demo import registry as demo

    registry = demo.register_sim_candidates(deployed_on={demo.DEPLOYED_CANDIDATE: [deploy_day]})
    plan = runs.plan_graph(dates, registry.names(), sample_size=args.sample_size, log_level=QUIET)
    # The deployment day needs its traffic and the realised (production) rates, and the
    # baseline simulated there: a candidate added later (the registry sensor runs it on every
    # demo day) is compared against the baseline on each of its days, so the comparison's
    # coverage check would fail on a day without it.
    plan[-1:-1] = [
        run
        for run in runs.plan_graph(
            [deploy_day], [registry.baseline_name()], sample_size=args.sample_size,
            log_level=QUIET,
        )
        if run.partition_key is not None
    ]
    if agentic_day is not None:
        # Every candidate on the agentic day, every conversation of it sampled.
        plan[-1:-1] = [
            run
            for run in runs.plan_graph(
                [agentic_day], registry.names(), sample_size=args.agentic_per_day,
                log_level=QUIET,
            )
            if run.partition_key is not None
        ]
    return plan, registry.names()


def print_demo_comparison(
    args: argparse.Namespace, deploy_day: str, agentic_day: str | None
) -> Path:
    """The demo's comparison from the warehouse as it is configured now: written as reports,
    printed as tables, or with ``--json`` as one JSON document (``agentic_day`` inside).
    Returns the HTML report's path."""
    # The agentic day alone first (a windowed materialization of candidate_comparison), then
    # the chat days, so that the chat days' comparison is the latest one the UI shows and
    # what the reports describe. The agentic day is not pooled with them: its production arm
    # (the log's final replies, whose tool calls sit in the prefix) is not comparable with a
    # resampled agentic turn, so it would distort the resampling fidelity (docs/agentic.md).
    agentic = (comparison_report(baseline=None, alpha=0.1, date_from=agentic_day,
                                 date_to=agentic_day)
               if agentic_day is not None else None)
    chat_to = deploy_day if agentic_day is not None else None
    computed = comparison_frame(baseline=None, alpha=0.1, date_to=chat_to)
    report = comparison_report(baseline=None, alpha=0.1, computed=computed)
    write_reports(report)
    html_report = write_html_report(baseline=None, alpha=0.1, computed=computed)
    if args.json:
        print(json.dumps(report if agentic is None else {**report, "agentic_day": agentic},
                         indent=2))
        return html_report
    print_comparison(report)
    if agentic is not None:
        print()
        print(f"agentic day {agentic_day} alone (tools declared; the candidate's turn runs "
              "until its final reply, each tool call answered by the tool simulator):")
        print_comparison(agentic)
    return html_report


def claim_partition_window(instance: dg.DagsterInstance, days: list[str]) -> str | None:
    """Make this home's daily partitions the demo's days, when the home is the demo's alone.

    Partitions open every day from ``DEPSIM_START_DATE`` (2025-01-01) by default, so a demo
    home's graph would be hundreds of empty days with the demo's few at the bottom, and a
    candidate added later would find no recent day to run on. A home with no
    ``partitions.yaml``, no ``DEPSIM_START_DATE``/``DEPSIM_END_DATE`` and no traffic but the
    demo's gets ``partitions.yaml`` with the demo's first and last day; any other home is
    left as it is, and must already cover the demo's days. Returns what to tell the user.
    """
    from depsim_assets import partitions

    first, last = min(days), max(days)
    if not (partitions.START_DATE <= first and (partitions.END_DATE or last) >= last):
        raise ValueError(
            f"the demo's days {first}..{last} are outside this home's partitions "
            f"({partitions.START_DATE}..{partitions.END_DATE or 'today'}, from "
            f"{config.partitions_file()} or ${config.START_DATE_ENV}/${config.END_DATE_ENV}); "
            "widen them, or use another DEPSIM_HOME"
        )
    overridden = any(os.environ.get(v, "").strip() for v in config.PARTITION_DATE_ENVS)
    if overridden or config.partitions_file().exists():
        return None
    sampled = instance.get_materialized_partitions(dg.AssetKey("conversation_prefixes"))
    if not sampled <= set(days):
        return None  # a home with traffic of its own keeps partitions that open every day
    path = config.write_partition_window(first, last)
    return f"{first}..{last} are this home's partitions ({path}; the UI reads it when it starts)"


def add_demo(sub: argparse._SubParsersAction) -> None:
    """``depsim demo`` (the ``depsim.commands`` entry point ``demo``)."""
    from depsim_demo import registry as demo

    p = sub.add_parser("demo", help="build a synthetic log, register sim candidates, run it all")
    p.add_argument("--days", type=int, default=demo.DEMO_DAYS, help="days of traffic")
    p.add_argument("--end-date", default=demo.DEMO_END_DATE, help="last day (YYYY-MM-DD)")
    p.add_argument(
        "--per-day",
        type=int,
        default=demo.DEMO_PER_DAY,
        help="conversations written to the log per day",
    )
    p.add_argument(
        "--sample-size",
        type=int,
        default=demo.DEMO_SAMPLE_SIZE,
        help="conversations sampled per day",
    )
    p.add_argument(
        "--agentic-per-day",
        type=int,
        default=demo.DEMO_AGENTIC_PER_DAY,
        help="conversations of the agentic day (tools declared; all sampled); 0: no agentic day",
    )
    p.add_argument("--seed", type=int, default=demo.DEMO_SEED, help="seed of the synthetic log")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=cmd_demo)
