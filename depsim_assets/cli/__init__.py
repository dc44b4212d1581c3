"""``depsim``: the command line. Every command has ``--help``; scripts read ``--json``.

A thin layer: each command family lives in its own module (``demo``, ``compare``, ``plan``,
``candidates``, ``judge``, ``traffic``, ``backfill``, ``ui``) and calls the stages, the runs
module and the Dagster instance (``instance``); this module wires their parsers together and
turns what a user can fix into one line on stderr.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Sequence

from depsim_assets.cli import backfill, candidates, compare, demo, judge, plan, traffic, ui
from depsim_assets.cli.common import EXPECTED_ERRORS, fail, fail_env, os_error_text

# The names tests and scripts reached before the CLI was a package.
from depsim_assets.cli.comparison import comparison_frame as _comparison_frame
from depsim_assets.cli.instance import INSTANCE_YAML
from depsim_assets.cli.instance import get_instance as _instance
from depsim_assets.cli.instance import prepare_dagster_home as _prepare_dagster_home

__all__ = [
    "EXPECTED_ERRORS",
    "INSTANCE_YAML",
    "_comparison_frame",
    "_instance",
    "_prepare_dagster_home",
    "build_parser",
    "main",
]

# In the order `depsim --help` lists them.
COMMANDS = (
    demo.add_demo,
    compare.add_compare,
    plan.add_plan,
    compare.add_report,
    candidates.add_candidates,
    judge.add_judge_agreement,
    traffic.add_ingest,
    traffic.add_sample,
    backfill.add_backfill,
    ui.add_sim,
    ui.add_ui,
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(
        prog="depsim",
        description="Deployment Simulation: replay real traffic through candidate models, "
        "grade every reply, compare behaviour rates. Files live under $DEPSIM_HOME "
        "(default ./.depsim).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``depsim`` console script."""
    args = build_parser().parse_args(argv)
    # Partitioned asset checks are a Dagster preview feature (the README says so); its warning
    # on every command would bury the output a user came for.
    warnings.filterwarnings("ignore", message=r".*is currently in preview")
    try:
        return int(args.func(args) or 0)
    except EXPECTED_ERRORS as exc:
        return fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    except KeyboardInterrupt:
        return fail("interrupted")
    except OSError as exc:
        return fail_env(os_error_text(exc))
