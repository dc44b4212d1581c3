"""depsim on a Dagster instance in PostgreSQL with steps run by Celery workers, on one machine.

``bash scripts/cluster.sh`` (which runs ``python -m depsim_tests.cluster``) starts, under a
home folder:

- PostgreSQL (:func:`depsim_tests.services.start_postgres`, data kept in
  ``<home>/cluster/postgres``) holding Dagster's run, event-log and schedule storage;
- Redis (:func:`~depsim_tests.services.start_redis`) as the Celery broker and result backend;
- N ``dagster-celery worker`` processes (default 2, named ``depsim-w1``, ``depsim-w2``...),
  standing in for N hosts;

writes ``<home>/dagster/dagster.yaml`` (Postgres storage, the run queue) and
``<home>/cluster/celery.yaml`` (the broker the workers and the executor share), and runs every
Dagster process with ``DEPSIM_EXECUTOR=celery`` so the code location's executor is Dagster's
``celery_executor`` (``depsim_assets/definitions.py``). Then it runs the demo's plan (the runs
``depsim demo`` makes, with the same run config) as ``dagster asset materialize`` runs, each
step a Celery task, and prints the comparison and the steps each worker ran. Everything it
started is stopped by process group when it ends, also on Ctrl-C.

The test (``test_cluster.py``) and the benchmark (``benchmarks/cluster_backfill.py``) use the
same :func:`start_cluster`, with the Dagster daemon running backfills.

Why a script and not a ``depsim`` subcommand: a deployment does not start its own database
and broker; it points ``dagster.yaml`` at its PostgreSQL and the workers and ``DEPSIM_CELERY_*``
at its Redis (docs/scale.md). Starting throwaway servers (``initdb`` as the ``postgres`` user)
is a harness for this machine, so it lives with the test helpers, and the product only gains
the executor switch.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from depsim_assets.warehouse import URL_ENV
from depsim_tests.services import (
    PgServer,
    RedisServer,
    ServiceError,
    start_postgres,
    start_redis,
)

BIN = Path(sys.executable).parent
PROJECT_ROOT = Path(__file__).resolve().parents[1]
WORKER_READY_S = 180.0
WAREHOUSE_DATABASE = "depsim_warehouse"
CELERY_WORKER_KEY = "Celery worker"  # dagster-celery's engine-event metadata naming the worker
# On a shared 2-core machine under load a code server can take minutes to start and answer:
# Dagster's defaults (180 s to start, 60 s per request) then cancel queued runs.
PATIENT_CODE_SERVERS = "code_servers:\n  local_startup_timeout: 600\n"
GRPC_TIMEOUT_ENV = {"DAGSTER_GRPC_TIMEOUT_SECONDS": "300"}


def instance_yaml(postgres_url: str, max_concurrent_runs: int = 4) -> str:
    """depsim's ``dagster.yaml`` with run, event-log and schedule storage in PostgreSQL.

    The URL names the psycopg2 driver: SQLAlchemy 2.1 maps a bare ``postgresql://`` to
    psycopg 3, on which dagster-postgres 0.29's ``NOTIFY run_events, %(id)s`` fails (psycopg 3
    binds parameters on the server, where NOTIFY takes none)."""
    if postgres_url.startswith("postgresql://"):
        postgres_url = "postgresql+psycopg2://" + postgres_url.removeprefix("postgresql://")
    return f"""\
# Written by depsim_tests/cluster.py at each start (the server's port changes).
telemetry:
  enabled: false
storage:
  postgres:
    postgres_url: "{postgres_url}"
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 2
concurrency:
  runs:
    max_concurrent_runs: {max_concurrent_runs}
{PATIENT_CODE_SERVERS}"""


def celery_yaml(broker: str, backend: str) -> str:
    """The executor block ``dagster-celery worker start -y`` reads: the same broker and
    backend the code location's ``celery_executor`` is configured with."""
    return f'execution:\n  config:\n    broker: "{broker}"\n    backend: "{backend}"\n'


def _stop_group(proc: subprocess.Popen[bytes], sig: int, grace_s: float) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)


def _restore_sigint() -> None:
    # A background child inherits SIGINT ignored; restore it so it can shut down cleanly.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass
class Cluster:
    """What :func:`start_cluster` started; :meth:`stop` ends all of it."""

    home: Path
    dagster_home: Path
    postgres: PgServer
    redis: RedisServer
    env: dict[str, str]
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    daemon: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    @property
    def folder(self) -> Path:
        return self.home / "cluster"

    def instance(self) -> dg.DagsterInstance:
        """The Postgres-backed instance (this process's DAGSTER_HOME is left alone)."""
        return dg.DagsterInstance.from_config(str(self.dagster_home))

    def start_daemon(self) -> None:
        """``dagster-daemon run``: launches queued runs and executes backfills."""
        log = self.folder / "daemon.log"
        self.logs.append(log)
        with open(log, "ab") as out:
            self.daemon = subprocess.Popen(
                [str(BIN / "dagster-daemon"), "run", "-w", str(PROJECT_ROOT / "workspace.yaml")],
                env=self.env, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_restore_sigint,
            )

    def stop(self) -> None:
        """Daemon (SIGINT), workers (SIGTERM: Celery's warm shutdown), Redis, PostgreSQL; each
        by process group, SIGKILL for whatever outlives its grace period."""
        if self.daemon is not None:
            _stop_group(self.daemon, signal.SIGINT, 20)
        for proc in self.workers.values():
            _stop_group(proc, signal.SIGTERM, 20)
        self.redis.stop()
        self.postgres.stop()


def start_cluster(
    home: Path,
    *,
    workers: int = 2,
    concurrency: int = 1,
    daemon: bool = False,
    keep_data: bool = False,
    pg_warehouse: bool = False,
    extra_env: dict[str, str] | None = None,
) -> Cluster:
    """Start PostgreSQL, Redis and ``workers`` Celery workers (each ``concurrency`` step
    processes) for the depsim home ``home``; with ``daemon``, the Dagster daemon too.

    ``keep_data`` keeps PostgreSQL's data under ``<home>/cluster/postgres`` across starts
    (the script); otherwise it is thrown away on :meth:`Cluster.stop` (tests, benchmarks).
    ``pg_warehouse`` puts the warehouse in database ``depsim_warehouse`` of the same server
    (``DEPSIM_WAREHOUSE_URL`` for every process) instead of the DuckDB file.
    """
    if workers < 1 or concurrency < 1:
        raise ValueError("workers and concurrency must be at least 1")
    folder = home / "cluster"
    folder.mkdir(parents=True, exist_ok=True)
    postgres = start_postgres(folder, keep=keep_data)
    try:
        redis = start_redis(folder)
    except BaseException:
        postgres.stop()
        raise
    warehouse_env = {}
    if pg_warehouse:
        try:
            warehouse_env[URL_ENV] = postgres.database(WAREHOUSE_DATABASE)
        except BaseException:
            redis.stop()
            postgres.stop()
            raise
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text(instance_yaml(postgres.url))
    # Results on database 1 of the same server, tasks on database 0.
    backend = redis.url.rsplit("/", 1)[0] + "/1"
    (folder / "celery.yaml").write_text(celery_yaml(redis.url, backend))
    env = {
        **os.environ,
        "DEPSIM_HOME": str(home),
        "DAGSTER_HOME": str(dagster_home),
        "DEPSIM_EXECUTOR": "celery",
        "DEPSIM_CELERY_BROKER": redis.url,
        "DEPSIM_CELERY_BACKEND": backend,
        # dagster-celery starts `celery` by name.
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
        **GRPC_TIMEOUT_ENV,
        **warehouse_env,
        **(extra_env or {}),
    }
    cluster = Cluster(home=home, dagster_home=dagster_home, postgres=postgres, redis=redis,
                      env=env)
    try:
        for i in range(1, workers + 1):
            name = f"depsim-w{i}"
            log = folder / f"{name}.log"
            log.write_bytes(b"")
            cluster.logs.append(log)
            with open(log, "ab") as out:
                cluster.workers[name] = subprocess.Popen(
                    [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                     "-y", str(folder / "celery.yaml"), "-n", name,
                     # Imported once in the worker before it forks its pool, so a step does
                     # not import the code location again (~30 s of CPU on a busy machine).
                     "-i", "depsim_assets.definitions", "--",
                     "--concurrency", str(concurrency), "--pool", "prefork"],
                    env=env, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True, preexec_fn=_restore_sigint,
                )
        _wait_workers(cluster)
        if daemon:
            cluster.start_daemon()
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _wait_workers(cluster: Cluster) -> None:
    """Until every worker logs Celery's ``ready.`` line (it then consumes the queue)."""
    deadline = time.monotonic() + WORKER_READY_S
    waiting = dict(cluster.workers)
    while waiting:
        for name, proc in list(waiting.items()):
            log = cluster.folder / f"{name}.log"
            text = log.read_text(errors="replace")
            if f"{name}@" in text and " ready." in text:
                del waiting[name]
            elif proc.poll() is not None:
                tail = " | ".join(text.strip().splitlines()[-3:])
                raise ServiceError(f"celery worker {name} exited ({log}): {tail}")
        if waiting and time.monotonic() > deadline:
            raise ServiceError(
                f"celery workers {', '.join(waiting)} not ready after {WORKER_READY_S:.0f}s"
            )
        time.sleep(0.5)


@contextlib.contextmanager
def running_cluster(
    home: Path, *, workers: int = 2, concurrency: int = 1, daemon: bool = False,
    pg_warehouse: bool = False,
) -> Iterator[Cluster]:
    """:func:`start_cluster` for a ``with`` block; stopped however the block ends."""
    cluster = start_cluster(home, workers=workers, concurrency=concurrency, daemon=daemon,
                            pg_warehouse=pg_warehouse)
    try:
        yield cluster
    finally:
        cluster.stop()


def worker_of_steps(instance: dg.DagsterInstance, run_ids: Sequence[str]) -> dict[str, str]:
    """``run_id:step_key`` -> the Celery worker that ran it, from the engine event
    dagster-celery's task writes on the worker before executing a step ("Executing steps ...
    in celery worker", metadata ``Celery worker``)."""
    found: dict[str, str] = {}
    for run_id in run_ids:
        for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
            event = entry.dagster_event
            if event is None or event.step_key is None:
                continue
            data = event.engine_event_data
            worker = data.metadata.get(CELERY_WORKER_KEY) if data is not None else None
            if worker is not None:
                found[f"{run_id}:{event.step_key}"] = str(getattr(worker, "value", worker))
    return found


# -- the one command: the demo on the cluster ------------------------------------------------


def _materialize_cmd(run: object) -> list[str]:
    from depsim_assets import runs

    assert isinstance(run, runs.PlannedRun)
    cmd = [str(BIN / "dagster"), "asset", "materialize", "-m", "depsim_assets.definitions",
           "--select", ",".join(run.assets)]
    if run.partition_key is not None:
        cmd += ["--partition", run.partition_key]
    if run.run_config:
        cmd += ["--config-json", json.dumps(run.run_config)]
    return cmd


def run_waves(cluster: Cluster, waves: Sequence[Sequence[object]], max_runs: int) -> None:
    """Each wave's runs as concurrent ``dagster asset materialize`` processes (at most
    ``max_runs`` at once), the next wave when all of a wave succeeded."""
    from depsim_assets import runs

    log_dir = cluster.folder / "runs"
    log_dir.mkdir(exist_ok=True)
    for wave in waves:
        pending = list(wave)
        active: list[tuple[runs.PlannedRun, subprocess.Popen[bytes], Path]] = []
        while pending or active:
            while pending and len(active) < max_runs:
                run = pending.pop(0)
                assert isinstance(run, runs.PlannedRun)
                log = log_dir / (run.label.replace(" ", "_").replace("|", "_") + ".log")
                with open(log, "wb") as out:
                    proc = subprocess.Popen(
                        _materialize_cmd(run), env=cluster.env, cwd=PROJECT_ROOT, stdout=out,
                        stderr=subprocess.STDOUT, start_new_session=True,
                    )
                active.append((run, proc, log))
                print(f"  started {run.label}", flush=True)
            for item in list(active):
                run, proc, log = item
                if proc.poll() is None:
                    continue
                active.remove(item)
                if proc.returncode != 0:
                    for _, other, _ in active:
                        _stop_group(other, signal.SIGINT, 20)
                    tail = log.read_text(errors="replace").strip().splitlines()[-1:]
                    raise RuntimeError(f"{run.label} failed ({log}): {' '.join(tail)}")
                print(f"  done    {run.label}", flush=True)
            time.sleep(0.5)


def demo_on_cluster(cluster: Cluster, args: argparse.Namespace) -> tuple[str, str | None]:
    """The demo's plan (``depsim_demo.command.demo_plan``, the runs ``depsim demo`` makes, the
    agentic day included) run on the cluster, wave by wave: every day's traffic, then every
    candidate-day, then the comparison. Returns the deployment day and the agentic day."""
    from depsim_assets import runs
    from depsim_demo.command import demo_plan, write_demo_logs

    dates, deploy_day, agentic_day = write_demo_logs(args, sys.stdout)
    plan, names = demo_plan(args, dates, deploy_day, agentic_day)
    with cluster.instance() as instance:
        runs.ensure_candidate_partitions(instance, names)
    traffic = [r for r in plan if r.assets == runs.TRAFFIC_ASSETS]
    candidates = [r for r in plan if r.assets == runs.CANDIDATE_ASSETS]
    comparison = [r for r in plan if r.partition_key is None]
    if len(traffic) + len(candidates) + len(comparison) != len(plan):
        raise RuntimeError("the demo's plan holds a run that is neither traffic, a "
                           "candidate-day nor the comparison")
    started = time.monotonic()
    run_waves(cluster, [traffic, candidates, comparison], args.max_runs)
    print(f"materialized {len(plan)} runs in {time.monotonic() - started:.0f}s")
    return deploy_day, agentic_day


def summary(cluster: Cluster) -> dict[str, object]:
    """Runs by status and steps per worker, read back from the Postgres instance."""
    with cluster.instance() as instance:
        records = instance.get_run_records()
        statuses = Counter(r.dagster_run.status.value for r in records)
        steps = worker_of_steps(instance, [r.dagster_run.run_id for r in records])
        storage = type(instance.run_storage).__name__
    per_worker = Counter(name.split("@", 1)[0] for name in steps.values())
    return {"run_storage": storage, "runs": dict(statuses), "steps_per_worker": dict(per_worker)}


def main(argv: Sequence[str] | None = None) -> int:
    from depsim_demo import registry as demo
    from depsim_demo.command import print_demo_comparison

    p = argparse.ArgumentParser(
        prog="scripts/cluster.sh",
        description="Run the depsim demo on a Dagster instance in PostgreSQL with its steps "
        "on Celery workers (Redis broker), all started here and stopped on exit.",
    )
    p.add_argument("--home", type=Path, default=None,
                   help="depsim home folder (default $DEPSIM_HOME, else ./.depsim-cluster)")
    p.add_argument("--workers", type=int, default=2, help="Celery worker processes (hosts)")
    p.add_argument("--concurrency", type=int, default=1, help="step processes per worker")
    p.add_argument("--max-runs", type=int, default=4, help="runs in flight at once")
    p.add_argument("--days", type=int, default=demo.DEMO_DAYS)
    p.add_argument("--end-date", default=demo.DEMO_END_DATE)
    p.add_argument("--per-day", type=int, default=demo.DEMO_PER_DAY)
    p.add_argument("--sample-size", type=int, default=demo.DEMO_SAMPLE_SIZE)
    p.add_argument("--agentic-per-day", type=int, default=demo.DEMO_AGENTIC_PER_DAY,
                   help="conversations of the demo's agentic day; 0: none")
    p.add_argument("--seed", type=int, default=demo.DEMO_SEED)
    p.add_argument("--pg-warehouse", action="store_true",
                   help="the warehouse in the same PostgreSQL (database depsim_warehouse) "
                   "instead of the DuckDB file")
    p.add_argument("--json", action="store_true",
                   help="print the comparison as JSON (as `depsim demo --json` does)")
    p.add_argument("--serve", action="store_true",
                   help="after the demo, keep everything up and run `dagster dev` on the "
                   "instance (the UI) until Ctrl-C")
    args = p.parse_args(argv)
    home = (args.home or Path(os.environ.get("DEPSIM_HOME") or ".depsim-cluster")).resolve()
    os.environ["DEPSIM_HOME"] = str(home)
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    home.mkdir(parents=True, exist_ok=True)
    # As `depsim demo`: the synthetic log only, with the public demo salt unless one is set;
    # set before the workers start, since the sampling step runs in them.
    from depsim_assets import config

    os.environ.setdefault(config.SALT_ENV, config.DEMO_SALT)
    if args.pg_warehouse and os.environ.get(URL_ENV):
        print(f"cluster: error: --pg-warehouse and {URL_ENV} both name a warehouse; "
              "give one", file=sys.stderr)
        return 2

    def terminate(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        cluster = start_cluster(home, workers=args.workers, concurrency=args.concurrency,
                                keep_data=True, pg_warehouse=args.pg_warehouse)
    except (ServiceError, ValueError) as exc:
        print(f"cluster: error: {exc}", file=sys.stderr)
        return 1
    # With --json, stdout carries only the comparison (the compare process writes it there).
    stdout = sys.stdout
    progress = contextlib.ExitStack()
    if args.json:
        progress.enter_context(contextlib.redirect_stdout(sys.stderr))
    try:
        print(f"PostgreSQL {cluster.postgres.url} (Dagster runs, events, schedules)")
        print(f"Redis      {cluster.redis.url} (Celery broker and results)")
        print(f"workers    {', '.join(cluster.workers)} x {args.concurrency} process(es)")
        print(f"instance   {cluster.dagster_home / 'dagster.yaml'}")
        if args.pg_warehouse:
            # This process reads the comparison back from there too.
            os.environ[URL_ENV] = cluster.env[URL_ENV]
            print(f"warehouse  {cluster.env[URL_ENV]} (PostgreSQL)")
        deploy_day, agentic_day = demo_on_cluster(cluster, args)
        # The comparison the demo prints, from the same functions; with --json on stdout
        # alone, so the two outputs can be compared byte for byte.
        with contextlib.ExitStack() as out:
            if args.json:
                out.enter_context(contextlib.redirect_stdout(stdout))
            print_demo_comparison(args, deploy_day, agentic_day)
        print(json.dumps(summary(cluster)))
        if args.serve:
            print("serving the UI on http://127.0.0.1:3000 (Ctrl-C stops everything)")
            ui = subprocess.Popen(
                [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml"],
                env=cluster.env, cwd=PROJECT_ROOT, start_new_session=True,
                preexec_fn=_restore_sigint,
            )
            try:
                ui.wait()
            finally:
                _stop_group(ui, signal.SIGINT, 20)
        return 0
    except KeyboardInterrupt:
        print("cluster: interrupted, stopping", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"cluster: error: {exc}", file=sys.stderr)
        return 1
    finally:
        progress.close()
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
