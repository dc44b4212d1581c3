"""The Dagster UI in a real browser, on a home folder with the demo's graph materialized.

The demo's runs (one small day) fill a temporary ``DEPSIM_HOME`` and its persistent Dagster
instance, ``dagster dev`` serves that instance on a free loopback port, and headless
Chromium (the system's ``chromium``, driven by Playwright; no browser download) opens what
a user opens: the asset graph, a partitioned asset's partitions and the comparison's latest
materialization. Screenshots go to ``<tmp_path>/screenshots`` and, when
``DEPSIM_SCREENSHOT_DIR`` is set, are copied there too (that is how ``docs/ui-comparison.png``
was made).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from depsim_assets import config, runs
from depsim_assets.cli.ui import group_members
from depsim_demo import registry as demo
from depsim_demo.synth import write_demo_log

pytestmark = pytest.mark.browser

HOST = "127.0.0.1"
GROUPS = {
    "traffic": ["sampled_conversations", "conversation_prefixes"],
    "replay": ["candidate_completions"],
    "judging": ["judge_grades", "novel_behaviors"],
    "estimates": ["behavior_rates", "candidate_comparison", "forecast_validation"],
}
SAMPLE_SIZE = 30  # conversations sampled: each candidate replies to as many
CANDIDATES = ["production", "sim-production", "sim-candidate-safer", "sim-candidate-regressed"]
SERVER_START_S = 240  # dagster dev imports the code location in two processes: slow on 2 cores
UI_TIMEOUT_MS = 60_000
LOCATION_QUERY = (
    "{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus "
    "locationOrLoadError { __typename ... on PythonError { message } } } } } }"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _yesterday() -> str:
    """The newest daily partition (UTC): at the top of the UI's partition list, whatever the
    date the test runs."""
    return (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()


def _materialize(day: str) -> None:
    """The demo's graph for one small day, into ``$DEPSIM_HOME`` and its Dagster instance.

    The same runs `depsim demo` plans (tagged as the CLI's, so the sensors leave the day
    alone), written to a persistent instance that ``dagster dev`` then serves.
    """
    write_demo_log(config.log_root(), [day], per_day=100, seed=7)
    registry = demo.register_sim_candidates()
    home = config.dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs.ensure_candidate_partitions(instance, registry.names())
        runs.execute(runs.plan_graph([day], registry.names(), sample_size=SAMPLE_SIZE), instance)


# A job started in the background of a non-interactive shell inherits SIGINT as ignored, and an
# ignored signal stays ignored across exec, so dagster dev would never stop on SIGINT. This
# prelude restores the default, then execs the server in the same process (no preexec_fn:
# pytest may be running threads, the simulator's among them).
SIGINT_DEFAULT_EXEC = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def _stop_group(proc: subprocess.Popen, *, grace_s: float = 30.0) -> None:
    """SIGINT the server's process group, wait, then SIGKILL whatever is left."""
    pgid = proc.pid  # start_new_session made the server the leader of its own group
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGINT)
    deadline = time.monotonic() + grace_s
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if group_members(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    proc.wait(timeout=30)


def _get_json(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if body is not None else {}
    request = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.load(resp)


def _wait_until_loaded(base: str, proc: subprocess.Popen, log: Path) -> None:
    """Wait for the webserver to answer and the code location to be loaded (or fail)."""
    deadline = time.monotonic() + SERVER_START_S
    state = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"dagster dev exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
        try:
            result = _get_json(f"{base}/graphql", {"query": LOCATION_QUERY})
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError) as exc:
            state = f"no answer ({exc})"
        else:
            entries = result["data"]["workspaceOrError"]["locationEntries"]
            for entry in entries:
                loaded = entry["locationOrLoadError"] or {}
                if loaded.get("__typename") == "PythonError":
                    pytest.fail(f"code location {entry['name']} failed: {loaded['message']}")
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                return
            state = f"locations {[(e['name'], e['loadStatus']) for e in entries]}"
        time.sleep(0.5)
    tail = log.read_text()[-4000:]
    pytest.fail(f"dagster dev not ready after {SERVER_START_S}s ({state}):\n{tail}")


@contextlib.contextmanager
def _dagster_dev(home: Path, log: Path) -> Iterator[str]:
    """``dagster dev`` on ``home``'s instance in its own process group; yields its base URL."""
    port = _free_port()
    env = {**os.environ, "DEPSIM_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    env.pop("DEPSIM_WAREHOUSE", None)
    cmd = [sys.executable, "-c", SIGINT_DEFAULT_EXEC, sys.executable, "-m", "dagster", "dev"]
    cmd += ["-w", "workspace.yaml", "-h", HOST, "-p", str(port)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=config.PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base = f"http://{HOST}:{port}"
        _wait_until_loaded(base, proc, log)
        yield base
    finally:
        _stop_group(proc)


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("no chromium on PATH: install Debian's `chromium` package (.ci/run does)")
    return path


def _shoot(page: Page, folder: Path, name: str) -> Path:
    path = folder / f"ui-{name}.png"
    page.screenshot(path=str(path))
    return path


def _check_asset_graph(page: Page, base: str, shots: Path) -> None:
    page.goto(f"{base}/asset-groups")
    for group in GROUPS:
        expect(page.get_by_text(group, exact=True).first).to_be_visible()
    # Groups open collapsed; the graph's own shortcut expands them all (⌥E).
    page.keyboard.press("Alt+KeyE")
    expect(page.get_by_text("judge_grades", exact=True).first).to_be_visible()
    # Graph nodes abbreviate long names ("sam…_conversations"); the graph's side tree shows
    # them whole once each group is unfolded by its arrow.
    for group in GROUPS:
        arrow = "button[.//*[@aria-label='arrow_drop_down']]"
        page.get_by_title(group, exact=True).locator(
            f"xpath=ancestor::div[{arrow}][1]/{arrow}"
        ).click()
    for names in GROUPS.values():
        for name in names:
            expect(page.get_by_text(name, exact=True).first).to_be_visible()
    _shoot(page, shots, "asset-graph")


def _check_partitions(page: Page, base: str, shots: Path, day: str) -> None:
    page.goto(f"{base}/assets/judge_grades?view=partitions")
    for key in [*CANDIDATES, day]:
        expect(page.get_by_text(key, exact=True).first).to_be_visible()
    # One candidate x day, by the link a user would share (clicking the day in the list
    # loses clicks while the lists re-render, which made this step flaky).
    page.goto(f"{base}/assets/judge_grades?view=partitions"
              f"&partition=sim-candidate-regressed%7C{day}")
    expect(page.get_by_text(f"sim-candidate-regressed|{day}", exact=True).first).to_be_visible()
    expect(page.get_by_text("Materialized", exact=True).first).to_be_visible()
    replies = page.locator("tr").filter(has=page.get_by_text("replies", exact=True))
    expect(replies).to_contain_text(str(SAMPLE_SIZE))
    _shoot(page, shots, "partitions")


def _check_comparison(page: Page, base: str, shots: Path) -> None:
    page.goto(f"{base}/assets/candidate_comparison?view=events")
    # The events view opens on the latest materialization.
    expect(page.get_by_text("Materialized in run").first).to_be_visible()
    row = page.locator("tr", has_text="forest_plot")
    expect(row).to_have_count(1)
    baseline = page.locator("tr").filter(has=page.get_by_text("baseline", exact=True))
    expect(baseline).to_contain_text("sim-production")
    row.get_by_text("Show Markdown").click()
    image = page.get_by_role("dialog").locator("img")
    expect(image).to_have_count(1)
    expect(image).to_have_attribute("alt", "rate ratios vs baseline")
    # Decoded and laid out: a broken or empty data URI leaves naturalWidth at 0.
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
    )
    assert image.evaluate("img => img.naturalWidth") > 400
    _shoot(page, shots, "comparison")


def test_ui_shows_the_materialized_graph(depsim_home, tmp_path):
    chromium = _chromium()
    day = _yesterday()
    _materialize(day)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with (
        _dagster_dev(depsim_home, tmp_path / "dagster-dev.log") as base,
        sync_playwright() as pw,
    ):
        expect.set_options(timeout=UI_TIMEOUT_MS)
        browser = pw.chromium.launch(executable_path=chromium, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1600, "height": 1000})
            # Mark Dagster's "join the community" dialog as seen, so it covers nothing.
            context.add_init_script("localStorage.setItem('communityNux', '\"1\"')")
            page = context.new_page()
            page.set_default_timeout(UI_TIMEOUT_MS)
            try:
                _check_asset_graph(page, base, shots)
                _check_partitions(page, base, shots, day)
                _check_comparison(page, base, shots)
            except Exception:
                _shoot(page, shots, "failure")  # what the page showed when it failed
                raise
        finally:
            browser.close()
    target = os.environ.get("DEPSIM_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for shot in sorted(shots.glob("*.png")):
            shutil.copy2(shot, Path(target) / shot.name)
