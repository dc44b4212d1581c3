"""``depsim``: the command line. Every command has ``--help``; scripts read ``--json``.

A thin layer: each command family lives in its own module (``compare``, ``plan``,
``candidates``, ``judge``, ``traffic``, ``backfill``, ``ui``) and calls the stages, the runs
module and the Dagster instance (``instance``); this module wires their parsers together and
turns what a user can fix into one line on stderr. Commands of other installed packages are
added through the ``depsim.commands`` entry point group: that is how ``depsim demo`` (package
``depsim_demo``) joins without the product importing its demo data.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence

from depsim_assets.cli import backfill, candidates, compare, judge, plan, traffic, ui
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

PLUGIN_GROUP = "depsim.commands"

# In the order `depsim --help` lists them, after the registered ones (`demo`).
COMMANDS = (
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
    for add in (*registered_commands(), *COMMANDS):
        add(sub)
    return parser


def registered_commands() -> list[Callable[[argparse._SubParsersAction], None]]:
    """The parser builders other packages register in the ``depsim.commands`` group."""
    from importlib.metadata import entry_points

    found = []
    for point in sorted(entry_points(group=PLUGIN_GROUP), key=lambda p: p.name):
        try:
            found.append(point.load())
        except Exception as exc:  # noqa: BLE001 - one broken package must not stop the rest
            print(
                f"depsim: warning: command {point.name!r} not loaded "
                f"({type(exc).__name__}: {exc}); reinstall depsim (scripts/bootstrap.sh)",
                file=sys.stderr,
            )
    return found


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
