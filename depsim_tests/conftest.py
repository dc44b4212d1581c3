"""Shared fixtures (every test gets its own depsim home folder under tmp_path) and the tiers.

Two tiers (docs/testing.md): ``pytest -m "not slow"`` is the inner loop, the whole suite runs
in CI. A test is ``slow`` when it runs a Dagster materialization, a browser, a process of
depsim's own (the CLI, ``dagster``, a Python child that imports depsim) or a llama server:
``e2e``, ``browser`` and ``real_model`` tests are slow by their marker, other tests by
``@pytest.mark.slow`` or by :data:`SLOW` below. The fast tier enforces it: in a run with
``-m "not slow"`` a test outside the slow tier that starts one of those fails, naming what it
started, instead of quietly making the inner loop slower (other runs list it at the end).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from typing import Any

import dagster as dg
import pytest

# The tests' dates span 2025-2026 and the partitions are read once, at import: a
# partitions.yaml that `depsim demo` left in ./.depsim (the README's flow) must not narrow them.
os.environ.setdefault("DEPSIM_START_DATE", "2025-01-01")

# Marked slow by their marker alone.
SLOW_MARKERS = ("e2e", "browser", "real_model")

# Tests marked slow here rather than in their files (files other people are changing as the
# tiers are drawn): node-id prefix -> why. A prefix that matches nothing in a collected file
# is an error, so a renamed test cannot silently fall back into the fast tier's budget.
SLOW: dict[str, str] = {
    "depsim_tests/judging/test_agreement.py::test_judge_agreement_asset_writes_the_same_numbers":
        "materializes judge_agreement",
    "depsim_tests/judging/test_agreement.py::"
    "test_compare_refuses_to_mix_taxonomy_versions_in_one_line": "Dagster runs",
    "depsim_tests/test_automation.py::"
    "test_new_day_sensor_leaves_days_to_whoever_planned_their_candidates": "Dagster runs",
    "depsim_tests/test_automation.py::test_comparison_sensor_leaves_cli_rates_to_the_cli":
        "Dagster runs",
    "depsim_tests/test_cli.py::test_the_sampling_step_fails_without_a_salt_however_launched":
        "Dagster runs",
    "depsim_tests/test_judge_config.py::test_dagster_replaces_constructor_values_at_launch":
        "a Dagster run",
    "depsim_tests/traffic/test_fast_sample.py::"
    "test_lines_across_chunk_boundaries_and_over_long_lines": "about a minute on a loaded machine",
}

_current: dict[str, Any] = {"item": None, "started": [], "enforce": False, "misplaced": []}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config, items):
    """Mark the slow tier (see the module docstring)."""
    modules = {}
    for item in items:
        slow = any(item.get_closest_marker(m) for m in SLOW_MARKERS)
        path = item.nodeid.split("::")[0]
        modules.setdefault(path, getattr(item, "module", None))
        for prefix in SLOW:
            if item.nodeid == prefix or item.nodeid.startswith((prefix + "::", prefix + "[")):
                slow = True
        if slow and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)
    stale = []
    for prefix in SLOW:
        path, _, name = prefix.partition("::")
        module = modules.get(path)
        if module is not None and name and not hasattr(module, name.split("::")[0]):
            stale.append(prefix)
    if stale:
        raise pytest.UsageError(
            "depsim_tests/conftest.py SLOW names tests that no longer exist: " + ", ".join(stale)
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    # Fixtures of any scope are set up inside the first test that needs them, so a module
    # fixture that materializes is charged to that test.
    _current["item"], _current["started"] = item, []
    try:
        return (yield)
    finally:
        _current["item"] = None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    started = _current["started"] if _current["item"] is item else []
    if started and report.when in ("setup", "call"):
        message = (
            f"{item.nodeid} is in the fast tier but started {', '.join(dict.fromkeys(started))};"
            " mark it @pytest.mark.slow (or e2e), see docs/testing.md"
        )
        _current["started"] = []
        if not _current["enforce"]:
            # The full suite (CI) still passes: a test in the wrong tier costs the inner loop
            # time, not correctness. It is named at the end of the run.
            _current["misplaced"].append(message)
        elif not report.failed:
            report.outcome = "failed"
            report.longrepr = message
    return report


def pytest_terminal_summary(terminalreporter):
    if _current["misplaced"]:
        terminalreporter.section("tests in the wrong tier")
        for message in _current["misplaced"]:
            terminalreporter.line(message)


def _note(what: str) -> None:
    item = _current["item"]
    if item is not None and not item.get_closest_marker("slow"):
        _current["started"].append(what)


# What only the slow tier may start: depsim's and Dagster's processes, servers and browsers.
_SLOW_PROGRAMS = ("depsim", "dagster", "llama", "chromium")
_SLOW_MODULES = ("depsim_assets", "depsim_demo", "dagster", "dagster_webserver")
_IMPORTS_DEPSIM = re.compile(r"\b(?:import|from)\s+(?:depsim_assets|depsim_demo|dagster)\b")


def slow_command(args: Any) -> bool:
    """Whether a subprocess command line starts a process of depsim's own (see _SLOW_*)."""
    words = shlex.split(args) if isinstance(args, str) else [str(w) for w in args]
    names = [os.path.basename(w) for w in words]
    if not names:
        return False
    if names[0].startswith(_SLOW_PROGRAMS) or any(n.startswith("llama") for n in names):
        return True
    for flag, value in zip(words, words[1:], strict=False):
        if flag == "-m" and value.split(".")[0] in _SLOW_MODULES:
            return True
        if flag == "-c" and _IMPORTS_DEPSIM.search(value):
            return True
    return False


def _watch_popen() -> None:
    original = subprocess.Popen.__init__

    def init(self, args, *a, **kw):
        if slow_command(args):
            shown = args if isinstance(args, str) else " ".join(str(w) for w in args)
            _note(f"a process of depsim's own ({shown[:60]}...)")
        original(self, args, *a, **kw)

    subprocess.Popen.__init__ = init  # type: ignore[method-assign]


def _watch_dagster_runs() -> None:
    original = dg.JobDefinition.execute_in_process

    def execute_in_process(self, *a, **kw):
        _note("a Dagster run (" + self.name + ")")
        return original(self, *a, **kw)

    dg.JobDefinition.execute_in_process = execute_in_process  # type: ignore[method-assign]
    original_job = dg.execute_job

    def execute_job(*a, **kw):
        _note("a Dagster run (execute_job)")
        return original_job(*a, **kw)

    dg.execute_job = execute_job


def pytest_configure(config):
    # Enforced where it matters, in a run that selects the fast tier (-m "not slow").
    _current["enforce"] = "not slow" in (config.getoption("markexpr", "") or "")
    _watch_popen()
    _watch_dagster_runs()

# Sampling refuses to run without a secret salt (config.check_deid_salt); the tests use this
# one, never the demo's, so a test that samples exercises the real rule. Tests of the refusal
# delete it with monkeypatch.
TEST_SALT = "depsim-test-salt-0123456789abcdef"


@pytest.fixture(autouse=True, scope="session")
def deid_salt():
    """``DEPSIM_DEID_SALT`` for the whole session (subprocesses inherit it)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEPSIM_DEID_SALT", TEST_SALT)
        yield TEST_SALT


@pytest.fixture
def depsim_home(tmp_path, monkeypatch):
    """A fresh ``$DEPSIM_HOME`` (and Dagster home) for one test."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DEPSIM_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    monkeypatch.delenv("DEPSIM_WAREHOUSE", raising=False)
    return home


@pytest.fixture
def instance():
    """An in-memory Dagster instance (dynamic partitions included)."""
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst
