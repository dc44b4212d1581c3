"""The fast tier's guard tells depsim's own processes from other subprocesses."""

import sys

import pytest

from depsim_tests.conftest import slow_command

PY = sys.executable


@pytest.mark.parametrize(
    "args",
    [
        [PY, "-m", "depsim_assets.cli", "sample", "--date", "2026-11-02"],
        [PY, "-m", "dagster", "dev"],
        ["/work/x/.venv/bin/dagster", "asset", "materialize", "-m", "depsim_assets.definitions"],
        ["/work/x/.venv/bin/depsim", "ui"],
        [PY, "-c", "import depsim_assets.definitions as d; print(len(d.defs.assets))"],
        [PY, "-c", "from dagster import materialize"],
        ["bash", "scripts/llama_server.sh", "build", "all"],
        f"{PY} -m depsim_assets.cli candidates list",
    ],
)
def test_depsim_processes_are_slow(args):
    assert slow_command(args)


@pytest.mark.parametrize(
    "args",
    [
        # A checkout folder named depsim is not a process of depsim's own.
        ["/home/me/depsim/.venv/bin/python", "-c", "print(1)"],
        ["/home/me/depsim/.venv/bin/lint-imports"],
        ["git", "-C", "/tmp/depsim_home", "status"],
        [PY, "-m", "pytest", "--version"],
        [],
    ],
)
def test_other_processes_are_not(args):
    assert not slow_command(args)
