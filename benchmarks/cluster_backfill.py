"""A week x 3 candidates backfill on PostgreSQL + Celery workers against the single-host run.

Run:  .venv/bin/python benchmarks/cluster_backfill.py [--days 7] [--per-day 30] [--runs 1]
          [--workers 2] [--concurrency 1] [--pg-warehouse] [--json]

The same work both ways: one home folder is prepared (the demo's synthetic log for ``--days``
days of ``--per-day`` conversations, seed 11, and the three sim candidates) and copied fresh
for every run, so no run reuses another's model-call cache. Each run submits one
``depsim``-style backfill (``backfills.submit_backfill``: the traffic assets per day, then
replay, grading and rates per candidate x day) and the Dagster daemon executes it:

- ``multiprocess``: the default instance (SQLite files under the home, depsim's dagster.yaml:
  4 runs at once) and the multiprocess executor (``DEPSIM_MAX_CONCURRENT_STEPS=2`` per run);
- ``celery``: the instance in PostgreSQL (same run queue, 4 runs at once), steps as Celery
  tasks on ``--workers`` dagster-celery workers of ``--concurrency`` processes each, Redis as
  broker (``depsim_tests/cluster.py``);
- ``celery-pg`` (with ``--pg-warehouse``): as ``celery``, with the warehouse in a PostgreSQL
  server of its own (``DEPSIM_WAREHOUSE_URL``) instead of the DuckDB file.

Wall time runs from submitting the backfill to the daemon finishing it (services and workers
are started before; their start-up is reported apart). Modes are interleaved run by run and
the median is reported. Lock waits: every process of a run imports a ``sitecustomize`` from
this run's folder that wraps ``duckdb.connect`` and writes one line per connection that had to
wait for DuckDB's file lock (how long, how many attempts); the warehouse's own retry loop
(``warehouse.open_connection``) is what waits. Other Dagster processes read the same flag
files, so the wrapper costs every mode the same (importing duckdb at start-up).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # depsim_tests is not an installed package

import dagster as dg  # noqa: E402

from depsim_assets import backfills, runs  # noqa: E402
from depsim_assets.cli.instance import INSTANCE_YAML  # noqa: E402
from depsim_assets.registry import Registry, save_registry  # noqa: E402
from depsim_demo import registry as demo  # noqa: E402
from depsim_demo.synth import write_demo_log  # noqa: E402
from depsim_tests.cluster import (  # noqa: E402
    GRPC_TIMEOUT_ENV,
    PATIENT_CODE_SERVERS,
    start_cluster,
    worker_of_steps,
)
from depsim_tests.services import start_postgres  # noqa: E402

BIN = Path(sys.executable).parent
START_DAY = "2026-09-01"
SALT = "depsim-benchmark-salt-0123456789abcdef"

SITECUSTOMIZE = '''\
# Written by benchmarks/cluster_backfill.py: record DuckDB file-lock waits of this process.
import os as _os
import threading as _threading
import time as _time

try:
    import duckdb as _duckdb
except ImportError:  # a process without duckdb (redis, postgres are not Python)
    _duckdb = None

if _duckdb is not None and _os.environ.get("DEPSIM_BENCH_LOCK_LOG"):
    _connect = _duckdb.connect
    _state = _threading.local()

    def connect(database=":memory:", *args, **kwargs):
        try:
            conn = _connect(database, *args, **kwargs)
        except _duckdb.IOException as exc:
            text = str(exc)
            if "Could not set lock" in text or "Conflicting lock" in text:
                if getattr(_state, "first", None) is None:
                    _state.first, _state.attempts = _time.monotonic(), 0
                _state.attempts += 1
            raise
        first = getattr(_state, "first", None)
        if first is not None:
            waited = _time.monotonic() - first
            with open(_os.environ["DEPSIM_BENCH_LOCK_LOG"], "a") as log:
                log.write(f"{_os.getpid()} {waited:.3f} {_state.attempts}\\n")
            _state.first = None
        return conn

    _duckdb.connect = connect
'''


def prepare_template(folder: Path, days: list[str], per_day: int) -> Path:
    """The home every run copies: the log and the registry (no warehouse, no instance)."""
    home = folder / "template"
    home.mkdir(parents=True)
    write_demo_log(home / "logs" / "production", days, per_day=per_day, seed=11)
    os.environ["DEPSIM_HOME"] = str(home)
    save_registry(
        Registry(baseline=demo.SIM_BASELINE, candidates=list(demo.SIM_CANDIDATES)),
        home / "candidates.yaml",
    )
    return home


def _stop(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGINT, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _lock_waits(path: Path) -> dict[str, Any]:
    waits = []
    if path.exists():
        waits = [float(line.split()[1]) for line in path.read_text().splitlines() if line]
    return {
        "lock_waits": len(waits),
        "lock_wait_s_total": round(sum(waits), 2),
        "lock_wait_s_max": round(max(waits), 2) if waits else 0.0,
    }


def one_run(mode: str, template: Path, folder: Path, days: list[str], args: argparse.Namespace):
    """Copy the template, start what ``mode`` needs, time one backfill; stop everything."""
    home = folder / "home"
    shutil.copytree(template, home)
    instrument = folder / "instrument"
    instrument.mkdir()
    (instrument / "sitecustomize.py").write_text(SITECUSTOMIZE)
    lock_log = folder / "lock_waits.txt"
    pythonpath = os.pathsep.join(filter(None, [str(instrument), os.environ.get("PYTHONPATH")]))
    env_extra = {
        "PYTHONPATH": pythonpath,
        "DEPSIM_BENCH_LOCK_LOG": str(lock_log),
        "DEPSIM_DEID_SALT": SALT,
        "DEPSIM_MIN_SAMPLE": "10",
        "DEPSIM_MAX_CONCURRENT_STEPS": "2",
        "DEPSIM_HOME": str(home),
        **GRPC_TIMEOUT_ENV,
    }
    names = [c.name for c in demo.SIM_CANDIDATES]
    started = time.monotonic()
    cluster = None
    daemon = None
    warehouse_pg = None
    try:
        if mode == "multiprocess":
            dagster_home = home / "dagster"
            dagster_home.mkdir()
            # The same patience with code servers as the cluster's instance (cluster.py).
            (dagster_home / "dagster.yaml").write_text(INSTANCE_YAML + PATIENT_CODE_SERVERS)
            env = {
                **os.environ, **env_extra, "DAGSTER_HOME": str(dagster_home),
                "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            }
            log = open(folder / "daemon.log", "wb")  # noqa: SIM115 - closed with the run
            daemon = subprocess.Popen(
                [str(BIN / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")],
                env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            instance = dg.DagsterInstance.from_config(str(dagster_home))
        else:
            if mode == "celery-pg":
                warehouse_pg = start_postgres(folder / "warehouse")
                env_extra["DEPSIM_WAREHOUSE_URL"] = warehouse_pg.url
            cluster = start_cluster(home, workers=args.workers, concurrency=args.concurrency,
                                    daemon=True, extra_env=env_extra)
            instance = cluster.instance()
        ready_s = time.monotonic() - started
        with instance:
            runs.ensure_candidate_partitions(instance, names)
            t0 = time.monotonic()
            backfill_id = backfills.submit_backfill(instance, days, names, traffic=True)
            final = backfills.wait_for_backfill(instance, backfill_id, timeout_s=args.timeout,
                                                poll_s=2)
            wall = time.monotonic() - t0
            records = instance.get_run_records(
                dg.RunsFilter(tags={"dagster/backfill": backfill_id})
            )
            run_ids = [r.dagster_run.run_id for r in records]
            result: dict[str, Any] = {
                "mode": mode,
                "wall_s": round(wall, 1),
                "startup_s": round(ready_s, 1),
                "status": final.status,
                "partitions": f"{final.materialized}/{final.target}",
                "runs": final.runs,
                **_lock_waits(lock_log),
            }
            if cluster is not None:
                per: dict[str, int] = {}
                for name in worker_of_steps(instance, run_ids).values():
                    short = name.split("@", 1)[0]
                    per[short] = per.get(short, 0) + 1
                result["steps_per_worker"] = dict(sorted(per.items()))
            return result
    finally:
        if daemon is not None:
            _stop(daemon)
        if cluster is not None:
            cluster.stop()
        if warehouse_pg is not None:
            warehouse_pg.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--per-day", type=int, default=30, help="conversations per day of log")
    parser.add_argument("--runs", type=int, default=1, help="runs per mode (median reported)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=1, help="processes per worker")
    parser.add_argument("--pg-warehouse", action="store_true",
                        help="also run celery-pg: the warehouse in PostgreSQL")
    parser.add_argument("--modes", default="multiprocess,celery",
                        help="comma-separated modes to run (celery-pg needs --pg-warehouse)")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--workdir", type=Path, help="keep files here (default: a temp dir)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    last = dt.date.fromisoformat(START_DAY) + dt.timedelta(days=args.days - 1)
    days = backfills.date_range(START_DAY, last.isoformat())
    # Every mode decides its own executor and warehouse.
    for name in ("DEPSIM_EXECUTOR", "DEPSIM_WAREHOUSE_URL", "DEPSIM_WAREHOUSE"):
        os.environ.pop(name, None)
    # The postgres system user must reach the run folders when this runs as root.
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="depsim-cluster-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)
    os.environ["DEPSIM_DEID_SALT"] = SALT
    template = prepare_template(workdir, days, args.per_day)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.pg_warehouse and "celery-pg" not in modes:
        modes.append("celery-pg")
    unknown = set(modes) - {"multiprocess", "celery", "celery-pg"}
    if unknown:
        parser.error(f"unknown modes: {', '.join(sorted(unknown))}")
    results: list[dict[str, Any]] = []
    try:
        for i in range(args.runs):
            for mode in modes:
                folder = workdir / f"{mode}-{i}"
                folder.mkdir()
                folder.chmod(0o755)
                load_start = os.getloadavg()[0]
                result = one_run(mode, template, folder, days, args)
                result["load_average_start_end"] = [round(load_start, 2),
                                                    round(os.getloadavg()[0], 2)]
                results.append(result)
                print(json.dumps(result), file=sys.stderr, flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    summary = {
        "days": len(days),
        "candidates": len(demo.SIM_CANDIDATES),
        "per_day": args.per_day,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "load_average_end": round(os.getloadavg()[0], 2),
        "median_wall_s": {
            m: statistics.median(r["wall_s"] for r in results if r["mode"] == m) for m in modes
        },
        "runs": results,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{len(days)} days x {len(demo.SIM_CANDIDATES)} candidates (+ traffic), "
              f"{args.per_day} conversations a day; celery: {args.workers} workers x "
              f"{args.concurrency}")
        print(f"{'mode':14} {'wall s':>8} {'startup s':>10} {'lock waits':>11} "
              f"{'wait s':>8} {'max s':>7}  status / steps per worker")
        for r in results:
            print(f"{r['mode']:14} {r['wall_s']:8.1f} {r['startup_s']:10.1f} "
                  f"{r['lock_waits']:11d} {r['lock_wait_s_total']:8.1f} "
                  f"{r['lock_wait_s_max']:7.1f}  {r['status']} {r['partitions']} "
                  f"{r.get('steps_per_worker', '')}")
        print("median wall s: " + ", ".join(f"{m} {v:.1f}"
                                           for m, v in summary["median_wall_s"].items()))
    return 0 if all(r["status"] == "COMPLETED_SUCCESS" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
