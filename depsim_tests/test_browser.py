"""The README's first hour in a real browser: demo, ``depsim ui``, a new candidate, a review.

Everything runs the way the README tells a user to, in a temporary ``DEPSIM_HOME`` and with
no virtual environment activated (the venv's ``bin`` is not on ``PATH``):
``.venv/bin/depsim demo`` (small sizes), then ``.venv/bin/depsim ui`` in its own process
group, then ``.venv/bin/depsim candidates add`` while the UI runs. Headless Chromium (the
system's ``chromium``, driven by Playwright; no browser download) checks what a reviewer
opens: the catalog's filled partitions, the asset graph, a partition, the day-by-day trend of
every candidate against the baseline (``candidate_comparison``'s ``trend_plot`` and
``behavior_rates``' per-category plots), and a comparison launched from the Launchpad over a
two-day window, whose materialization must show those two days only. Meanwhile the registry
sensor must run the new candidate on every demo day; the seconds it took are printed.

Screenshots go to ``<tmp_path>/screenshots``; with ``DEPSIM_SCREENSHOT_DIR`` set they are
copied there too, and ``review-trend.png``/``review-launchpad.png`` are the README's images
(``docs/img/``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
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

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from depsim_assets import config
from depsim_assets.cli.ui import group_members

pytestmark = pytest.mark.browser

HOST = "127.0.0.1"
GROUPS = {
    "traffic": ["sampled_conversations", "conversation_prefixes"],
    "replay": ["candidate_completions"],
    "judging": ["judge_grades", "novel_behaviors"],
    "estimates": ["behavior_rates", "candidate_comparison", "forecast_validation"],
}
VENV_BIN = Path(sys.executable).parent
DEPSIM = VENV_BIN / "depsim"
# The demo's days at its defaults (2026-11-01..03 simulated, 11-04 the deployment day) at a
# size that keeps the test to a few minutes.
# No agentic day: its 600 conversations would triple the demo's time here.
DEMO_ARGS = ["--per-day", "100", "--sample-size", "30", "--no-progress",
             "--agentic-per-day", "0"]
SAMPLE_SIZE = 30
DEMO_DAYS = ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"]
WINDOW = ("2026-11-02", "2026-11-03")  # the Launchpad's comparison window
CANDIDATES = ["production", "sim-production", "sim-candidate-safer", "sim-candidate-regressed"]
# Added while the UI runs: the regressed persona at another temperature.
NEW = "regressed-t07"
NEW_ARGS = ["--base-url", "sim", "--model", "sim-candidate-regressed", "--param",
            "temperature=0.7"]
DEMO_S = 600
SERVER_START_S = 240  # dagster dev imports the code location in two processes: slow on 2 cores
NEW_RUNS_S = 600
UI_TIMEOUT_MS = 60_000
LOCATION_QUERY = (
    "{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus "
    "locationOrLoadError { __typename ... on PythonError { message } } } } } }"
)
RUNS_QUERY = (
    "query($tags: [ExecutionTag!]) { runsOrError(filter: {tags: $tags}) { ... on Runs "
    "{ results { runId status tags { key value } } } } }"
)
RUN_QUERY = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
MATERIALIZATIONS_QUERY = (
    '{ assetOrError(assetKey: {path: ["candidate_comparison"]}) { ... on Asset '
    "{ assetMaterializations(limit: 20) { runId timestamp } } } }"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _readme_env(home: Path) -> dict[str, str]:
    """The environment of a user following the README: the home the demo made, no venv
    activated, nothing of the test session's own settings."""
    drop = {"VIRTUAL_ENV", "DAGSTER_HOME", "DEPSIM_WAREHOUSE", "DEPSIM_DEID_SALT",
            *config.PARTITION_DATE_ENVS}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep)
        if p and Path(p).resolve() != VENV_BIN.resolve()
    )
    env["DEPSIM_HOME"] = str(home)
    return env


def _depsim(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    out = subprocess.run(
        [str(DEPSIM), *args], cwd=config.PROJECT_ROOT, env=env, capture_output=True, text=True,
        timeout=timeout, stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, f"depsim {args[0]} exited {out.returncode}: {out.stderr[-3000:]}"
    return out.stdout


def _graphql(base: str, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"{base}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.load(resp)["data"]


def _wait_until_loaded(base: str, proc: subprocess.Popen, log: Path) -> None:
    """Wait for the webserver to answer and the code location to be loaded (or fail)."""
    deadline = time.monotonic() + SERVER_START_S
    state = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"depsim ui exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
        try:
            entries = _graphql(base, LOCATION_QUERY)["workspaceOrError"]["locationEntries"]
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError) as exc:
            state = f"no answer ({exc})"
        else:
            for entry in entries:
                loaded = entry["locationOrLoadError"] or {}
                if loaded.get("__typename") == "PythonError":
                    pytest.fail(f"code location {entry['name']} failed: {loaded['message']}")
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                return
            state = f"locations {[(e['name'], e['loadStatus']) for e in entries]}"
        time.sleep(0.5)
    tail = log.read_text()[-4000:]
    pytest.fail(f"depsim ui not ready after {SERVER_START_S}s ({state}):\n{tail}")


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid and fields[0] != "Z":
                    out.append(int(entry.name))
    return out


@contextlib.contextmanager
def _depsim_ui(env: dict[str, str], log: Path) -> Iterator[str]:
    """``.venv/bin/depsim ui`` in its own process group, as a terminal runs it; yields its
    base URL. Stopped as the terminal's Ctrl-C stops it: SIGINT to the group. depsim then
    stops ``dagster dev`` (its own session); whatever of either group is left is killed."""
    port = _free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(DEPSIM), "ui", "--port", str(port)],
            cwd=config.PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    servers: list[int] = []
    try:
        base = f"http://{HOST}:{port}"
        _wait_until_loaded(base, proc, log)
        servers = _children(proc.pid)  # dagster dev leads its own process group
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=120)
        for pgid in (proc.pid, *servers):
            if group_members(pgid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert not any(group_members(g) for g in servers), "a process of dagster dev outlived it"


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("no chromium on PATH: install Debian's `chromium` package (.ci/run does)")
    return path


def _shoot(page: Page, folder: Path, name: str) -> Path:
    path = folder / f"ui-{name}.png"
    page.screenshot(path=str(path))
    return path


def _shoot_review(page: Page, folder: Path, name: str, *, what: str = "") -> Path:
    """The open dialog alone (or ``what`` in it, whole even where the dialog scrolls), as a
    README image: a 256-colour PNG (a UI survives it) keeps it small."""
    from PIL import Image

    path = folder / f"review-{name}.png"
    dialog = page.get_by_role("dialog")
    (dialog.locator(what) if what else dialog).screenshot(path=str(path))
    with Image.open(path) as shot:
        small = shot.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)
    return path


def _filled(page: Page, base: str, shots: Path) -> dict[str, tuple[int, int]]:
    """The catalog's materialized/total partitions of a traffic and a candidate asset."""
    page.goto(f"{base}/assets")
    share = {}
    for asset, total in [("conversation_prefixes", 4), ("behavior_rates", 5 * 4)]:
        link = page.get_by_role("link", name=asset).first
        # The catalog row: the nearest ancestor of the asset's link that holds its status,
        # "<materialized or All> <missing> <failed> <in progress>  <N> partitions".
        row = link.locator(f"xpath=ancestor::*[contains(., '{total} partitions')][1]")
        expect(row).to_have_count(1)
        found = re.search(r"(All|\d+)\s+\d+\s+\d+\s+\d+\s+(\d+) partitions", row.inner_text())
        assert found, row.inner_text()
        share[asset] = (total if found[1] == "All" else int(found[1]), int(found[2]))
    _shoot(page, shots, "catalog")
    return share


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


def _open_markdown_image(page: Page, key: str, alt: str) -> None:
    """Open metadata ``key``'s markdown (a PNG) and check the image decoded."""
    row = page.locator("tr").filter(has=page.get_by_text(key, exact=True))
    expect(row).to_have_count(1)
    row.get_by_text("Show Markdown").click()
    image = page.get_by_role("dialog").locator("img")
    expect(image).to_have_count(1)
    expect(image).to_have_attribute("alt", alt)
    # Decoded and laid out: a broken or empty data URI leaves naturalWidth at 0.
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
    )
    assert image.evaluate("img => img.naturalWidth") > 400


def _check_comparison(page: Page, base: str, shots: Path) -> None:
    page.goto(f"{base}/assets/candidate_comparison?view=events")
    # The events view opens on the latest materialization: the demo's, over all its days.
    expect(page.get_by_text("Materialized in run").first).to_be_visible()
    baseline = page.locator("tr").filter(has=page.get_by_text("baseline", exact=True))
    expect(baseline).to_contain_text("sim-production")
    _open_markdown_image(page, "forest_plot", "rate ratios vs baseline")
    _shoot(page, shots, "comparison")
    page.keyboard.press("Escape")
    # The trend: every candidate against the baseline, one panel per category, day by day.
    _open_markdown_image(page, "trend_plot", "rate per 100k by day vs sim-production")
    _shoot(page, shots, "trend")
    _shoot_review(page, shots, "trend", what="img")


def _check_rate_series(page: Page, base: str, shots: Path) -> None:
    """behavior_rates' own Dagster plots: one chart per category's rate over partitions."""
    page.goto(f"{base}/assets/behavior_rates")
    page.get_by_role("button", name="Plots").click()
    for category in ("lying_about_tools", "fabricated_facts"):
        title = page.get_by_text(f"rate_per_100k/{category}", exact=True)
        expect(title).to_be_visible()
        title.scroll_into_view_if_needed()
        # the chart under the title is a drawn canvas
        chart = title.locator("xpath=following::canvas[1]")
        expect(chart).to_be_visible()
        assert chart.evaluate("c => c.width * c.height") > 10_000
    _shoot(page, shots, "rates-plots")


def _launch_windowed_comparison(page: Page, base: str, shots: Path) -> str:
    """From the asset page: Materialize's menu, Open launchpad, a two-day window, launch.
    Returns the run id."""
    page.goto(f"{base}/assets/candidate_comparison")
    materialize = page.get_by_role("button", name="Materialize").first
    materialize.locator("xpath=ancestor::span[1]/following-sibling::span[1]//button").click()
    page.get_by_text("Open launchpad", exact=True).click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("Launchpad (configure assets)")).to_be_visible()
    editor = dialog.locator(".CodeMirror")
    expect(editor).to_contain_text("candidate_comparison")
    # What a user pastes over the scaffolded config (resources keep their defaults).
    yaml = "\n".join([
        "ops:",
        "  candidate_comparison:",
        "    config:",
        f"      date_from: '{WINDOW[0]}'",
        f"      date_to: '{WINDOW[1]}'",
        "",
    ])
    editor.click()
    page.keyboard.press("ControlOrMeta+KeyA")
    page.keyboard.insert_text(yaml)
    expect(editor).to_contain_text(f"date_to: '{WINDOW[1]}'")
    expect(dialog.get_by_text("No errors")).to_be_visible()
    _shoot(page, shots, "launchpad")
    _shoot_review(page, shots, "launchpad")
    with page.expect_response(
        lambda r: "/graphql" in r.url and "LaunchPipelineExecution" in (r.request.post_data or "")
    ) as launched:
        dialog.get_by_role("button", name="Materialize").click()
    result = launched.value.json()["data"]["launchPipelineExecution"]
    assert result.get("__typename") == "LaunchRunSuccess", result
    return result["run"]["id"]


def _wait_for_run(base: str, run_id: str, timeout_s: float) -> None:
    deadline, status = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        status = _graphql(base, RUN_QUERY, {"id": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(2)
    assert status == "SUCCESS", f"run {run_id} ended {status}"


def _check_windowed_materialization(page: Page, base: str, shots: Path, run_id: str) -> None:
    """The Launchpad run's own materialization (the comparison sensor may add later ones)."""
    mats = _graphql(base, MATERIALIZATIONS_QUERY)["assetOrError"]["assetMaterializations"]
    (stamp,) = [m["timestamp"] for m in mats if m["runId"] == run_id]
    page.goto(f"{base}/assets/candidate_comparison?view=events&time={stamp}")
    expect(page.get_by_text(f"Materialized in run {run_id[:8]}")).to_be_visible()
    dates = page.locator("tr").filter(has=page.get_by_text("dates", exact=True))
    expect(dates).to_have_count(1)
    shown = dates.inner_text()
    assert all(day in shown for day in WINDOW), shown
    outside = [d for d in DEMO_DAYS if d not in WINDOW]
    assert not any(day in shown for day in outside), shown
    by_day = page.locator("tr").filter(has=page.get_by_text("by_day", exact=True))
    expect(by_day).to_have_count(1)
    rows = by_day.inner_text()
    assert "sim-candidate-regressed" in rows and all(day in rows for day in WINDOW), rows[:2000]
    assert not any(day in rows for day in outside), rows[:2000]
    _shoot(page, shots, "windowed")


def _new_candidate_runs(base: str) -> dict[str, str]:
    """Status of each registry-sensor run of the new candidate, by partition."""
    data = _graphql(base, RUNS_QUERY, {"tags": [{"key": "depsim/source",
                                                 "value": "registry_sensor"}]})
    out = {}
    for run in data["runsOrError"]["results"]:
        tags = {t["key"]: t["value"] for t in run["tags"]}
        if tags.get("dagster/partition", "").startswith(f"{NEW}|"):
            out[tags["dagster/partition"]] = run["status"]
    return out


def test_first_hour_in_the_ui(depsim_home, tmp_path):
    chromium = _chromium()
    shots = tmp_path / "screenshots"
    shots.mkdir()
    env = _readme_env(depsim_home)
    started = time.monotonic()
    said = _depsim(env, "demo", *DEMO_ARGS, timeout=DEMO_S)
    assert "2026-11-01..2026-11-04 are this home's partitions" in said
    demo_s = time.monotonic() - started
    with (
        _depsim_ui(env, tmp_path / "depsim-ui.log") as base,
        sync_playwright() as pw,
    ):
        ui_s = time.monotonic() - started - demo_s
        added = time.monotonic()
        _depsim(env, "candidates", "add", NEW, *NEW_ARGS)
        browser = pw.chromium.launch(executable_path=chromium, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1600, "height": 1000})
            # Mark Dagster's "join the community" dialog as seen, so it covers nothing.
            context.add_init_script("localStorage.setItem('communityNux', '\"1\"')")
            page = context.new_page()
            page.set_default_timeout(UI_TIMEOUT_MS)
            expect.set_options(timeout=UI_TIMEOUT_MS)
            try:
                filled_before = _filled(page, base, shots)
                _check_asset_graph(page, base, shots)
                _check_partitions(page, base, shots, WINDOW[1])
                _check_comparison(page, base, shots)
                _check_rate_series(page, base, shots)
                run_id = _launch_windowed_comparison(page, base, shots)
                _wait_for_run(base, run_id, NEW_RUNS_S)
                _check_windowed_materialization(page, base, shots, run_id)
                deadline, runs = added + NEW_RUNS_S, {}
                while time.monotonic() < deadline:
                    runs = _new_candidate_runs(base)
                    if len(runs) == len(DEMO_DAYS) and set(runs.values()) == {"SUCCESS"}:
                        break
                    assert "FAILURE" not in runs.values(), runs
                    time.sleep(2)
                new_s = time.monotonic() - added
                assert runs == {f"{NEW}|{d}": "SUCCESS" for d in DEMO_DAYS}, runs
                filled_after = _filled(page, base, shots)
            except Exception:
                _shoot(page, shots, "failure")  # what the page showed when it failed
                raise
        finally:
            browser.close()
    print(
        f"\nfirst hour: demo {demo_s:.0f}s, depsim ui ready {ui_s:.0f}s, new candidate's "
        f"{len(DEMO_DAYS)} runs succeeded {new_s:.0f}s after `depsim candidates add`; filled "
        f"(materialized/partitions) after the demo {filled_before}, after the new candidate "
        f"{filled_after}; load average {os.getloadavg()[0]:.1f}"
    )
    assert filled_before["conversation_prefixes"] == (4, 4)
    # 3 sims + production on 3 days, production and the baseline on the deployment day; the
    # new candidate's partition exists from the moment it is added
    assert filled_before["behavior_rates"][0] >= 14
    assert filled_after["behavior_rates"] == (18, 20)
    target = os.environ.get("DEPSIM_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for shot in sorted(shots.glob("*.png")):
            shutil.copy2(shot, Path(target) / shot.name)
