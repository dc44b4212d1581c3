"""Many partitions at once on one warehouse file: parallel runs, each step its own process.

DuckDB lets one process at a time hold the file read-write. These tests run partitions the way
a user does at scale — concurrent ``dagster asset materialize`` processes, and a real Dagster
backfill executed by the daemon through the run queue — and check that every run succeeds
with no lock error, that the runs and steps really overlapped in time in separate processes,
and that every row is in the warehouse.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster import DagsterEventType

from depsim_assets import backfills, cli, config, runs, warehouse
from depsim_assets.registry import Candidate, Registry, save_registry
from depsim_demo import registry as demo
from depsim_demo.synth import write_demo_log

pytestmark = pytest.mark.e2e

PER_DAY = 30
LOCK_WORDS = ("Could not set lock", "Conflicting lock", "stayed locked")
DAGSTER_BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def small_days(monkeypatch):
    """Tiny days keep these tests quick; the minimum-sample check would block them."""
    monkeypatch.setenv("DEPSIM_MIN_SAMPLE", "10")


def _register(names_to_models: dict[str, str]) -> list[str]:
    save_registry(
        Registry(
            baseline="sim-production",
            candidates=[
                Candidate(name=name, base_url="sim", model=model, max_concurrency=8)
                for name, model in names_to_models.items()
            ],
        ),
        config.registry_path(),
    )
    return list(names_to_models)


def _prepare(days: list[str], names: dict[str, str]) -> tuple[dg.DagsterInstance, list[str]]:
    """Log, registry, a persistent instance with depsim's dagster.yaml, and traffic for ``days``
    materialized (in process: these tests are about the candidate partitions)."""
    write_demo_log(config.log_root(), days, per_day=PER_DAY, seed=11)
    candidates = _register(names)
    instance = cli._instance()  # writes the dagster.yaml the CLI writes, then opens it
    runs.ensure_candidate_partitions(instance, candidates)
    runs.execute(
        [r for r in runs.plan_graph(days, []) if r.assets == runs.TRAFFIC_ASSETS], instance
    )
    return instance, candidates


def _env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DEPSIM_HOME": str(config.depsim_home()),
        "DAGSTER_HOME": str(config.dagster_home()),
        "PATH": f"{DAGSTER_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        **extra,
    }


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    """Most intervals open at one instant."""
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = now = 0
    for _, step in edges:
        now += step
        best = max(best, now)
    return best


def _step_windows(instance: dg.DagsterInstance, run_ids: list[str]):
    """Per step: (run id, step key, pid, start, end); and the pid of each run's orchestrator."""
    steps, run_pids = [], {}
    for run_id in run_ids:
        started: dict[str, tuple[int, float]] = {}
        for entry in instance.all_logs(run_id):
            event = entry.dagster_event
            if event is None:
                continue
            if event.event_type == DagsterEventType.RUN_START:
                run_pids[run_id] = event.pid
            elif event.event_type == DagsterEventType.STEP_START:
                started[event.step_key] = (event.pid, entry.timestamp)
            elif event.event_type == DagsterEventType.STEP_SUCCESS:
                pid, start = started[event.step_key]
                steps.append((run_id, event.step_key, pid, start, entry.timestamp))
    return steps, run_pids


def _lock_messages(instance: dg.DagsterInstance, run_ids: list[str]) -> list[str]:
    return [
        entry.message
        for run_id in run_ids
        for entry in instance.all_logs(run_id)
        if any(word in (entry.message or "") for word in LOCK_WORDS)
    ]


def _assert_rows(pairs: list[tuple[str, str]]) -> None:
    """Every candidate x day has its completions, one grade per reply x category, its rates."""
    with warehouse.connection(config.warehouse_path(), read_only=True) as conn:
        prefixes = dict(
            conn.execute(
                "SELECT traffic_date, count(*) FROM conversation_prefixes GROUP BY 1"
            ).fetchall()
        )
        n_categories = conn.execute("SELECT count(DISTINCT category) FROM judge_grades").fetchone()[
            0
        ]
        for cand, day in pairs:
            keys = [cand, day]
            completions = conn.execute(
                "SELECT count(*), count(DISTINCT conversation_id), count(*) FILTER (status='ok')"
                " FROM candidate_completions WHERE candidate = ? AND traffic_date = ?",
                keys,
            ).fetchone()
            grades = conn.execute(
                "SELECT count(*), count(DISTINCT completion_id) FROM judge_grades"
                " WHERE candidate = ? AND traffic_date = ?",
                keys,
            ).fetchone()
            rates = conn.execute(
                "SELECT count(*) FROM behavior_rates WHERE candidate = ? AND traffic_date = ?",
                keys,
            ).fetchone()[0]
            assert prefixes[day] >= PER_DAY * 0.6, (day, prefixes[day])
            assert completions == (prefixes[day], prefixes[day], prefixes[day]), (cand, day)
            assert grades == (prefixes[day] * n_categories, prefixes[day]), (cand, day)
            assert rates == n_categories, (cand, day)
    assert n_categories == 20


def test_eight_partitions_at_once_in_separate_processes(depsim_home):
    """8 candidate x day runs launched together with ``dagster asset materialize`` (the
    multiprocess executor: each step a process of its own) on one warehouse file."""
    days = ["2026-10-01", "2026-10-02"]
    instance, candidates = _prepare(
        days,
        {
            "sim-production": "sim-production",
            "sim-candidate-safer": "sim-candidate-safer",
            "sim-candidate-regressed": "sim-candidate-regressed",
            "sim-production-rerun": "sim-production",
        },
    )
    pairs = [(c, d) for c in candidates for d in days]
    assert len(pairs) == 8
    procs = [
        subprocess.Popen(
            [
                str(DAGSTER_BIN / "dagster"),
                "asset",
                "materialize",
                "-m",
                "depsim_assets.definitions",
                "--select",
                ",".join(runs.CANDIDATE_ASSETS),
                "--partition",
                f"{cand}|{day}",
            ],
            env=_env(DEPSIM_MAX_CONCURRENT_STEPS="3"),
            cwd=config.PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for cand, day in pairs
    ]
    try:
        outputs = [p.communicate(timeout=1200)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for (cand, day), proc, out in zip(pairs, procs, outputs, strict=True):
        assert proc.returncode == 0, f"{cand}|{day} failed:\n{out[-3000:]}"
        assert not any(word in out for word in LOCK_WORDS), out[-3000:]

    records = instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS]))
    run_ids = [
        r.dagster_run.run_id
        for r in records
        if r.dagster_run.tags.get("dagster/partition")
        and "|" in r.dagster_run.tags["dagster/partition"]
    ]
    assert len(run_ids) == 8
    steps, run_pids = _step_windows(instance, run_ids)
    for run_id in run_ids:  # each run materialized every asset (its checks ran beside)
        keys = {key for rid, key, *_ in steps if rid == run_id}
        assert set(runs.CANDIDATE_ASSETS) <= keys, keys
    # Each step ran in a process of its own, none in its run's orchestrating process.
    assert len({pid for *_, pid, _, _ in steps}) == len(steps)
    assert not {pid for *_, pid, _, _ in steps} & set(run_pids.values())
    # And they overlapped: several steps of different runs in flight at the same instant.
    assert _max_overlap([(s, e) for *_, s, e in steps]) >= 3
    replay = [(s, e) for _, key, _, s, e in steps if key == "candidate_completions"]
    assert _max_overlap(replay) >= 2
    assert _lock_messages(instance, run_ids) == []
    _assert_rows(pairs)


@pytest.fixture
def daemon(depsim_home):
    """``dagster-daemon run`` on the test's instance, in its own process group."""
    cli._prepare_dagster_home()
    log = open(depsim_home / "daemon.log", "w")  # noqa: SIM115 - closed in teardown
    proc = subprocess.Popen(
        [
            str(DAGSTER_BIN / "dagster-daemon"),
            "run",
            "-w",
            str(config.PROJECT_ROOT / "workspace.yaml"),
        ],
        env=_env(DEPSIM_MAX_CONCURRENT_STEPS="2"),
        cwd=config.PROJECT_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # A background process inherits SIGINT ignored; restore it so it can shut down cleanly.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        yield proc
    finally:
        pgid = os.getpgid(proc.pid) if proc.poll() is None else proc.pid
        for sig, wait in ((signal.SIGINT, 20), (signal.SIGKILL, 10)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        log.close()


def test_backfill_of_days_by_three_candidates_runs_in_parallel(depsim_home, daemon, capsys):
    """`depsim backfill` of 3 days x 3 candidates: the daemon runs it through the run queue
    (4 runs at once), every partition materializes, nothing fails on the lock.

    Three days, not the week this test ran before: 9 runs still fill the queue past its limit
    of 4, and the week (21 runs, ~5 min of CI) is measured through the same daemon and
    executor by ``benchmarks/cluster_backfill.py --modes multiprocess`` (docs/scale.md)."""
    days = backfills.date_range("2026-09-01", "2026-09-03")
    instance, candidates = _prepare(days, {c.name: c.model for c in demo.SIM_CANDIDATES})
    code = cli.main(
        [
            "backfill",
            "--from",
            days[0],
            "--to",
            days[-1],
            "--candidates",
            ",".join(candidates),
            "--skip-traffic",
            "--json",
        ]
    )
    assert code == 0
    submitted = __import__("json").loads(capsys.readouterr().out.strip().splitlines()[-1])
    backfill_id = submitted["backfill_id"]
    assert submitted["partitions_target"] == len(days) * 3 * len(runs.CANDIDATE_ASSETS)

    started = time.monotonic()
    # Dagster's own process start-up dominates, not the 30 conversations a day: each run
    # imports the code location twice (run worker, forkserver) and each of its ~7 steps
    # builds its plan in a fresh process. Minutes on two idle cores; far more when loaded.
    final = backfills.wait_for_backfill(instance, backfill_id, timeout_s=3600, poll_s=5)
    log = (depsim_home / "daemon.log").read_text()
    assert final.status == "COMPLETED_SUCCESS", (final, log[-3000:])
    assert final.materialized == final.target == len(days) * 3 * len(runs.CANDIDATE_ASSETS), final
    assert final.failed == 0
    assert final.runs == {"SUCCESS": len(days) * 3}, final.runs

    records = instance.get_run_records(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    windows = [(r.start_time, r.end_time) for r in records]
    assert all(s is not None and e is not None for s, e in windows)
    concurrent = _max_overlap(windows)  # type: ignore[arg-type]
    assert 2 <= concurrent <= 4, concurrent  # parallel, and the queue's limit held
    run_ids = [r.dagster_run.run_id for r in records]
    steps, run_pids = _step_windows(instance, run_ids)
    assert len({pid for *_, pid, _, _ in steps}) == len(steps)
    assert not {pid for *_, pid, _, _ in steps} & set(run_pids.values())
    assert _lock_messages(instance, run_ids) == []
    assert not any(word in log for word in LOCK_WORDS)
    _assert_rows([(c, d) for c in candidates for d in days])
    print(f"backfill of {len(days) * 3} partitions: {time.monotonic() - started:.0f}s, "
          f"{concurrent} at once")


def test_lock_wait_gives_up_with_a_clear_message(tmp_path):
    """Another process holding the file: opening waits, then fails saying what to do."""
    path = tmp_path / "w.duckdb"
    duckdb.connect(str(path)).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb,time; c=duckdb.connect({str(path)!r}); print('held', flush=True);"
            " time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(warehouse.WarehouseLockTimeout, match="stayed locked by another"):
            warehouse.open_connection(str(path), read_only=True, timeout_s=1.5)
        waited = time.monotonic() - started
        assert 1.5 <= waited < 5
    finally:
        holder.kill()
        holder.wait()
    # Released: the next open succeeds at once.
    with warehouse.connection(path) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_lock_wait_succeeds_when_the_holder_lets_go(tmp_path):
    """A writer that holds the file for a moment delays a reader; it does not fail it."""
    path = tmp_path / "w.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE TABLE t AS SELECT 42 AS x")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb,time; c=duckdb.connect({str(path)!r}); print('held', flush=True);"
            " time.sleep(1.5); c.close(); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with warehouse.connection(path, read_only=True, timeout_s=30) as conn:
            assert conn.execute("SELECT x FROM t").fetchone() == (42,)
        assert time.monotonic() - started >= 1.0
    finally:
        holder.kill()
        holder.wait()
