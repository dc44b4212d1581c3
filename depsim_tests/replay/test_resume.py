"""A replay killed with SIGKILL resumes from its cache: no duplicate rows, no paid-twice calls."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import dagster as dg
import duckdb
import pytest

from depsim_assets import config, runs
from depsim_assets.registry import Candidate, Registry, save_registry
from depsim_demo.synth import write_demo_log

pytestmark = pytest.mark.e2e

DAY, SAMPLE = "2026-11-01", 240
CHILD = textwrap.dedent(
    """
    import dagster as dg
    from depsim_assets import runs
    with dg.DagsterInstance.ephemeral() as instance:
        runs.ensure_candidate_partitions(instance, [{name!r}])
        runs.execute([r for r in runs.plan_graph([{day!r}], [{name!r}], sample_size={sample})
                      if r.label.startswith(("traffic", {name!r}))], instance)
    """
)


def _ok_calls(path, kind: str) -> int:
    """Answers of ``kind`` stored in the response cache."""
    with duckdb.connect(str(path), read_only=True) as conn:
        return conn.execute("SELECT count(*) FROM model_calls WHERE status = 'ok' AND kind = ?",
                            [kind]).fetchone()[0]


def _cached(path) -> int:
    return _ok_calls(path, "replay")


def _start(name: str, day: str, sample: int) -> subprocess.Popen:
    """The day's traffic and ``name``'s replay in a child process of its own group, 150 ms
    per simulated call (4 in flight), so the replay lasts long enough to be killed."""
    env = {**os.environ, "DEPSIM_SIM_FAULTS": "latency_ms=150"}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD.format(day=day, sample=sample, name=name)], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _kill_when(child: subprocess.Popen, ready, timeout_s: float) -> None:
    """SIGKILL ``child``'s group once ``ready()`` holds (polled every 0.5 s)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.5)
        try:
            if ready():
                break
        except duckdb.Error:  # the child holds the write lock at that instant, or no table yet
            continue
    assert child.poll() is None, "the child finished before it could be killed"
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()


def _resume(monkeypatch, name: str, day: str) -> dict:
    """``name``'s replay of ``day`` again, in this process, without the latency; returns its
    materialization metadata."""
    monkeypatch.setenv("DEPSIM_SIM_FAULTS", "")
    with dg.DagsterInstance.ephemeral() as instance:
        runs.ensure_candidate_partitions(instance, [name])
        key = str(runs.multi_key(name, day))
        runs.execute([runs.PlannedRun(name, ("candidate_completions",), key)], instance)
        return instance.get_latest_materialization_event(
            dg.AssetKey("candidate_completions")).asset_materialization.metadata


def test_sigkill_then_resume(depsim_home, monkeypatch):
    write_demo_log(config.log_root(), [DAY], per_day=400, seed=9)
    save_registry(Registry(baseline="slow", candidates=[Candidate(
        name="slow", base_url="sim", model="sim-production", max_concurrency=4)]))
    # 150 ms per call at 4 in flight: the replay alone takes about 9 s, long enough to kill.
    child = _start("slow", DAY, SAMPLE)
    path = config.warehouse_path()
    # Kill once the replay has written some answers but far from all.
    _kill_when(child, lambda: 40 <= _cached(path) < SAMPLE, 120)
    cached_before = _cached(path)
    assert 0 < cached_before < SAMPLE

    meta = _resume(monkeypatch, "slow", DAY)
    with duckdb.connect(str(path), read_only=True) as conn:
        # Agentic prefixes (tool turns in the demo log) take a step per tool round.
        rows, distinct, steps = conn.execute(
            "SELECT count(*), count(DISTINCT conversation_id), sum(steps) "
            "FROM candidate_completions WHERE candidate = 'slow'").fetchone()
        cache_rows = conn.execute(
            "SELECT count(*) FROM model_calls WHERE kind = 'replay'").fetchone()[0]
    assert meta["calls_made"].value == steps - cached_before
    assert meta["cache_hits"].value == cached_before
    assert rows == distinct == SAMPLE
    assert cache_rows == steps


AGENTIC_DAY, AGENTIC_N = "2026-11-05", 120


def _turns_done(path) -> tuple[int, int]:
    """(candidate steps answered, tool results simulated) in the response cache."""
    return _ok_calls(path, "replay"), _ok_calls(path, "tool_sim")


def test_sigkill_mid_trajectory_then_resume(depsim_home, monkeypatch):
    """Agentic turns killed with SIGKILL between their steps: the rerun asks only the steps
    and tool simulations never answered, and each is stored once."""
    from depsim_demo.synth import write_agentic_day

    write_agentic_day(config.log_root(), AGENTIC_DAY, n=AGENTIC_N, seed=5)
    save_registry(Registry(baseline="agent", candidates=[Candidate(
        name="agent", base_url="sim", model="sim-candidate-regressed", max_concurrency=4)]))
    # 150 ms per call at 4 in flight: about 2-3 steps per turn, so the turns take tens of
    # seconds, long enough to kill while some have finished steps and others not.
    child = _start("agent", AGENTIC_DAY, AGENTIC_N)
    path = config.warehouse_path()

    # Kill once the first round's answers and some simulations are stored: turns are then
    # between steps (mid-trajectory).
    def first_round_done() -> bool:
        steps, sims = _turns_done(path)
        return steps >= AGENTIC_N and sims >= 20

    _kill_when(child, first_round_done, 240)
    steps_before, sims_before = _turns_done(path)
    assert steps_before >= AGENTIC_N and sims_before >= 20

    meta = _resume(monkeypatch, "agent", AGENTIC_DAY)
    with duckdb.connect(str(path), read_only=True) as conn:
        rows, steps, more_than_one = conn.execute(
            "SELECT count(*), sum(steps), count(*) FILTER (WHERE steps > 1) "
            "FROM candidate_completions WHERE candidate = 'agent'").fetchone()
        cache_steps, cache_sims = conn.execute(
            "SELECT count(*) FILTER (WHERE kind = 'replay'), "
            "count(*) FILTER (WHERE kind = 'tool_sim') FROM model_calls").fetchone()
    assert rows == AGENTIC_N and more_than_one > 0
    # Every step of every turn is stored once; the rerun asked only the ones not stored.
    assert cache_steps == steps
    assert meta["calls_made"].value == steps - steps_before
    assert meta["cache_hits"].value == steps_before
    # Every simulated result is stored once too (those of the killed run reused).
    assert cache_sims == meta["tool_results_simulated"].value
    assert cache_sims >= sims_before
