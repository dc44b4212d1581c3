"""Replay throughput: depsim against Inspect AI, a bare openai loop and the ideal, on equal work.

The simulator runs in its own process with a fixed per-request latency; every system sends
the same N one-message prompts to it with at most C requests in flight, in two settings:

- **stored** (a fresh process, every answer stored): ``depsim`` is a new Python process that
  materializes the ``candidate_completions`` asset for one partition, as ``depsim`` does
  (``runs.execute``: Dagster, the call engine, the response cache written through to a
  fresh DuckDB warehouse, then the partition's rows); ``inspect`` is ``inspect eval`` of a
  one-line generate task, writing its log (every sample) to a temp folder. Wall time of
  the whole process, start-up included, for both.
- **in_process** (no storage, warm): ``depsim`` is the engine the asset uses (``CallEngine``
  + ``replay_requests`` on depsim's client) called in this process; ``depsim_sharded`` the
  same engine sharded over ``--workers`` warm worker processes (``models.shards``), C/workers
  in flight each; ``inspect`` is ``inspect_ai.eval()`` called in a warm process of Inspect's
  own venv, timing only that call. Inspect always writes a log file: the closest to no
  storage is ``log_samples=False, log_realtime=False`` (the header only, in a temp folder).
  ``reference`` is a bare asyncio loop over the ``openai`` client and a semaphore.

``ideal`` is N x latency / C. Each system runs ``--runs`` times, interleaved (the order
rotates every round, so no system always runs first or after the same neighbour); the
summary gives median, min and max per system and the ratios of medians. A last pass against
a zero-latency simulator measures client CPU per call. The machine's load average is
recorded: ratios compare systems measured in the same run, on the same machine.

Inspect AI is installed from PyPI into its own venv (``--inspect-venv``, default
``~/.cache/depsim/bench-venv-inspect``, kept for the next run) the first time.

    python benchmarks/replay_throughput.py [--n 1280] [--concurrency 256] \
        [--latency-ms 1000] [--runs 3] [--workers 2] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai

from depsim_assets.endpoints import async_client
from depsim_assets.models import CallEngine, Limits
from depsim_assets.models.shards import ShardPool
from depsim_assets.replay.engine import ReplayOutcome, ReplayRequest, replay_requests
from depsim_assets.sim.process import SimProcess

MODEL = "sim-production"
CANDIDATE, DAY = "bench", "2026-11-01"
DEFAULT_INSPECT_VENV = Path("~/.cache/depsim/bench-venv-inspect")
# Retries of a failed request, the same for every system (the openai client's default): a
# keep-alive connection the server closed as the client reused it is retried, not a lost
# answer, for all of them alike.
RETRIES = 2
# Longest a single run may take before it is reported as failed (minutes of real work at
# the defaults; far past anything a working system needs).
RUN_TIMEOUT_S = 1800

STORED, IN_PROCESS = "stored", "in_process"


def prompt(i: int) -> str:
    """The i-th prompt: the same text for every system."""
    return f"Plan a trip, #{i}."


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, with paths made absolute (a relative path would point elsewhere
    once a subprocess runs in its own temp folder)."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--n", type=int, default=1280, help="requests per run (default: 1280)")
    ap.add_argument("--concurrency", type=int, default=256, help="C, in flight (default: 256)")
    ap.add_argument("--latency-ms", type=float, default=1000,
                    help="the simulator's latency per request (default: 1000)")
    ap.add_argument("--runs", type=int, default=3, help="runs per system (default: 3)")
    ap.add_argument("--workers", type=int, default=2,
                    help="worker processes of depsim_sharded; 1 leaves it out (default: 2)")
    ap.add_argument("--cpu-n", type=int, default=1000, help="calls in the zero-latency pass")
    ap.add_argument("--no-inspect", action="store_true", help="leave Inspect AI out")
    ap.add_argument("--inspect-venv", type=Path, default=DEFAULT_INSPECT_VENV,
                    help="venv holding Inspect AI, made if missing "
                         "(default: ~/.cache/depsim/bench-venv-inspect)")
    ap.add_argument("--json", action="store_true", help="print one JSON object only")
    args = ap.parse_args(argv)
    for name in ("n", "concurrency", "runs", "workers", "cpu_n"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.latency_ms < 0:
        ap.error("--latency-ms must not be negative")
    args.inspect_venv = args.inspect_venv.expanduser().resolve()
    return args


# ---------------------------------------------------------------- arithmetic of the report


def summarize(times: Sequence[float]) -> dict[str, Any]:
    """Median, min and max of one system's run times (``None`` when no run succeeded)."""
    if not times:
        return {"median_s": None, "min_s": None, "max_s": None, "runs_s": []}
    return {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
            "max_s": round(max(times), 3), "runs_s": [round(t, 3) for t in times]}


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b rounded, or ``None`` when either is missing."""
    return round(a / b, 3) if a is not None and b else None


def ratios(systems: dict[str, dict[str, Any]], ideal_s: float) -> dict[str, float | None]:
    """Every system's median over the ideal, and every other system's over Inspect's."""
    medians = {name: s["median_s"] for name, s in systems.items()}
    out = {f"{name}_over_ideal": ratio(m, ideal_s) for name, m in medians.items()}
    if "inspect" in medians:
        out.update({f"{name}_over_inspect": ratio(m, medians["inspect"])
                    for name, m in medians.items() if name != "inspect"})
    return out


def interleaved(systems: Sequence[tuple[str, str]], runs: int) -> list[tuple[str, str]]:
    """Every system once per round, ``runs`` rounds, the order rotated by one each round."""
    order: list[tuple[str, str]] = []
    for r in range(runs):
        k = r % len(systems) if systems else 0
        order.extend([*systems[k:], *systems[:k]])
    return order


@dataclass
class Run:
    """One timed run of one system."""

    wall_s: float
    ok: int  # answers that came back (and, in the stored setting, were stored)


def report(args: argparse.Namespace, results: dict[tuple[str, str], list[Run]],
           errors: list[str], extra: dict[str, Any]) -> dict[str, Any]:
    """The JSON object: settings, per-system summaries, ratios of medians, load, errors."""
    ideal = args.n * args.latency_ms / 1000 / args.concurrency
    out: dict[str, Any] = {
        "n": args.n, "concurrency": args.concurrency, "latency_ms": args.latency_ms,
        "runs": args.runs, "workers": args.workers, "ideal_s": round(ideal, 3),
    }
    for mode in (STORED, IN_PROCESS):
        systems = {}
        for (m, name), runs in results.items():
            if m == mode:
                systems[name] = {**summarize([r.wall_s for r in runs]),
                                 "ok": [r.ok for r in runs]}
        out[mode] = systems
        out[f"{mode}_ratios"] = ratios(systems, ideal)
    out.update(extra)
    out["errors"] = errors
    return out


# ---------------------------------------------------------------- depsim, fresh process

DEPSIM_CHILD = textwrap.dedent(
    """
    import dagster as dg
    from depsim_assets import runs
    from depsim_assets.partitions import multi_key
    with dg.DagsterInstance.ephemeral() as instance:
        runs.ensure_candidate_partitions(instance, [{name!r}])
        key = str(multi_key({name!r}, {day!r}))
        runs.execute([runs.PlannedRun({name!r}, ("candidate_completions",), key)], instance)
    """
)


def _seed_home(home: Path, base_url: str, n: int, concurrency: int) -> None:
    """A depsim home folder holding N prefixes of one day and a candidate on the simulator."""
    import duckdb
    import pandas as pd

    from depsim_assets.registry import Candidate, Registry, save_registry
    from depsim_assets.warehouse import CONVERSATION_PREFIXES, ensure_tables, replace_partitions

    home.mkdir(parents=True)
    save_registry(Registry(baseline=CANDIDATE, candidates=[Candidate(
        name=CANDIDATE, base_url=base_url, model=MODEL, max_concurrency=concurrency,
        max_retries=RETRIES)]), home / "candidates.yaml")
    prefixes = [json.dumps([{"role": "user", "content": prompt(i)}]) for i in range(n)]
    frame = pd.DataFrame({
        "conversation_id": [f"bench-{i}" for i in range(n)], "traffic_date": DAY,
        "prefix_json": prefixes, "n_prefix_messages": 1,
        "prefix_hash": [f"h{i}" for i in range(n)], "original_reply": "",
        "production_model": "production"})
    with duckdb.connect(str(home / "warehouse.duckdb")) as conn:
        ensure_tables(conn)
        replace_partitions(conn, [(CONVERSATION_PREFIXES, frame, {"traffic_date": DAY})])


def depsim_stored(template: Path, *, n: int, concurrency: int) -> Run:
    """``candidate_completions`` materialized by a fresh process into a fresh warehouse."""
    import duckdb

    with tempfile.TemporaryDirectory(prefix="depsim-bench-") as tmp:
        home = Path(tmp) / "home"
        shutil.copytree(template, home)
        env = {k: v for k, v in os.environ.items()
               if k not in ("DEPSIM_WAREHOUSE", "DAGSTER_HOME", "DEPSIM_RUN_BUDGET_USD",
                            "DEPSIM_SIM_FAULTS")}
        env["DEPSIM_HOME"] = str(home)
        code = DEPSIM_CHILD.format(name=CANDIDATE, day=DAY)
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp, text=True,
                              capture_output=True, timeout=RUN_TIMEOUT_S)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"depsim run failed: {_last_line(done.stderr)}")
        with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
            rows = conn.execute("SELECT count(*) FROM candidate_completions "
                                "WHERE status = 'ok'").fetchone()
            cached = conn.execute("SELECT count(*) FROM model_calls "
                                  "WHERE status = 'ok'").fetchone()
    return Run(wall, min(int(rows[0]) if rows else 0, int(cached[0]) if cached else 0))


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][-300:] if lines else "(no output)"


# ---------------------------------------------------------------- depsim, in process


def _requests(items: Sequence[int]) -> list[ReplayRequest]:
    return [ReplayRequest(f"bench-{i}", 0, [{"role": "user", "content": prompt(i)}])
            for i in items]


async def _engine_run(base_url: str, items: Sequence[int], concurrency: int
                      ) -> list[ReplayOutcome]:
    # depsim's own client (aiohttp transport, connections kept at the concurrency) and the
    # engine the asset builds; the engine does the retrying, so the client's is off.
    client = async_client(base_url, api_key_env=None, timeout_s=120, max_retries=0,
                          max_connections=concurrency)
    async with client:
        engine = CallEngine(Limits(max_concurrency=concurrency, max_retries=RETRIES))
        return await replay_requests(client, _requests(items), engine=engine, model=MODEL,
                                     params={})


def depsim_in_process(base_url: str, *, n: int, concurrency: int) -> Run:
    """The engine in this process, no storage (client set-up included)."""
    start = time.perf_counter()
    outs = asyncio.run(_engine_run(base_url, range(n), concurrency))
    return Run(time.perf_counter() - start, sum(o.status == "ok" for o in outs))


def shard_job(base_url: str, items: list[int], concurrency: int) -> list[str]:
    """One shard in a worker process: its slice through its own engine; the statuses."""
    return [o.status for o in asyncio.run(_engine_run(base_url, items, concurrency))]


def depsim_sharded(pool: ShardPool, base_url: str, *, n: int, concurrency: int) -> Run:
    """The engine sharded over the pool's warm workers, C split between them."""
    start = time.perf_counter()
    statuses = pool.map(functools.partial(shard_job, base_url), list(range(n)),
                        concurrency=concurrency)
    return Run(time.perf_counter() - start, sum(s == "ok" for s in statuses))


# ---------------------------------------------------------------- bare openai reference


async def _reference(base_url: str, n: int, concurrency: int) -> int:
    import httpx2  # the transport openai 3.x ships with

    # The default connection pool is smaller than a large C: give the loop C connections.
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    semaphore = asyncio.Semaphore(concurrency)
    async with openai.AsyncOpenAI(
        base_url=base_url, api_key="bench", max_retries=RETRIES, timeout=120,
        http_client=openai.DefaultAsyncHttpxClient(limits=limits),
    ) as client:
        async def one(i: int) -> bool:
            async with semaphore:
                try:
                    resp = await client.chat.completions.create(
                        model=MODEL, messages=[{"role": "user", "content": prompt(i)}])
                except openai.APIError:  # counted as not ok, as the other systems do
                    return False
                return bool(resp.choices[0].message.content)

        return sum(await asyncio.gather(*(one(i) for i in range(n))))


def reference(base_url: str, *, n: int, concurrency: int) -> Run:
    """A bare asyncio loop over the openai client (client set-up included)."""
    start = time.perf_counter()
    ok = asyncio.run(_reference(base_url, n, concurrency))
    return Run(time.perf_counter() - start, ok)


# ---------------------------------------------------------------- Inspect AI

INSPECT_TASK = textwrap.dedent(
    """
    from inspect_ai import Task, task
    from inspect_ai.dataset import MemoryDataset, Sample
    from inspect_ai.solver import generate

    @task
    def replay(n: int = 10):
        samples = [Sample(input=f"Plan a trip, #{i}.") for i in range(int(n))]
        return Task(dataset=MemoryDataset(samples), solver=generate())
    """
)

# Runs in Inspect's venv: warm-up eval (imports, provider set-up), then one timed eval() per
# line read from stdin; prints one JSON line per timed eval.
INSPECT_IN_PROCESS = textwrap.dedent(
    """
    import json, sys, tempfile, time
    from inspect_ai import Task, eval as inspect_eval
    from inspect_ai.dataset import MemoryDataset, Sample
    from inspect_ai.solver import generate

    base_url, concurrency = sys.argv[1], int(sys.argv[2])

    def task(n):
        samples = [Sample(input=f"Plan a trip, #{i}.") for i in range(n)]
        return Task(dataset=MemoryDataset(samples), solver=generate())

    def run(n, log_dir):
        # No option turns Inspect's log off: the header only, no realtime event buffer.
        return inspect_eval(task(n), model="openai-api/sim/MODEL", model_base_url=base_url,
                            max_connections=concurrency, max_retries=RETRIES, display="none",
                            log_dir=log_dir, log_samples=False, log_realtime=False)

    with tempfile.TemporaryDirectory() as tmp:
        run(2, tmp)
        print(json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            n = int(line)
            with tempfile.TemporaryDirectory(dir=tmp) as log_dir:
                start = time.perf_counter()
                logs = run(n, log_dir)
                wall = time.perf_counter() - start
            log = logs[0]
            ok = log.results.completed_samples if log.status == "success" and log.results else 0
            print(json.dumps({"wall_s": wall, "ok": ok, "status": log.status}), flush=True)
    """
).replace("MODEL", MODEL).replace("RETRIES", str(RETRIES))


def ensure_inspect(venv: Path, say: Callable[[str], None]) -> tuple[Path, str]:
    """The venv's python with Inspect AI importable (made and installed from PyPI if not),
    and Inspect's version."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import importlib.metadata as m; print(m.version('inspect-ai'))"]
    if python.exists():
        found = subprocess.run(probe, capture_output=True, text=True)
        if found.returncode == 0:
            return python, found.stdout.strip()
    say(f"installing Inspect AI into {venv} (once; a few minutes)")
    venv.parent.mkdir(parents=True, exist_ok=True)
    for cmd in ([sys.executable, "-m", "venv", str(venv)],
                [str(venv / "bin" / "pip"), "install", "-q", "inspect-ai", "openai"]):
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:3])} failed: {_last_line(done.stderr)}")
    found = subprocess.run(probe, capture_output=True, text=True, check=True)
    return python, found.stdout.strip()


def inspect_stored(python: Path, base_url: str, *, n: int, concurrency: int) -> Run:
    """``inspect eval`` as a fresh process writing its log; ok = samples in the log."""
    import zipfile

    with tempfile.TemporaryDirectory(prefix="depsim-bench-inspect-") as tmp:
        task = Path(tmp) / "replay_task.py"
        task.write_text(INSPECT_TASK)
        logs = Path(tmp) / "logs"
        env = {**os.environ, "SIM_BASE_URL": base_url, "SIM_API_KEY": "bench",
               "INSPECT_DISPLAY": "none"}
        # Inspect takes the task file relative to the working folder, not as an absolute path.
        cmd = [str(python.parent / "inspect"), "eval", task.name, "--model",
               f"openai-api/sim/{MODEL}", "-T", f"n={n}", "--max-connections",
               str(concurrency), "--max-retries", str(RETRIES), "--log-dir", str(logs)]
        start = time.perf_counter()
        done = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True,
                              timeout=RUN_TIMEOUT_S)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"inspect eval failed: {_last_line(done.stderr)}")
        written = list(logs.glob("*.eval"))
        if len(written) != 1:
            raise RuntimeError(f"inspect eval wrote {len(written)} logs, expected 1")
        with zipfile.ZipFile(written[0]) as log:
            ok = sum(name.startswith("samples/") for name in log.namelist())
    return Run(wall, ok)


class InspectInProcess:
    """A warm process of Inspect's venv that times ``eval()`` calls on request."""

    def __init__(self, python: Path, base_url: str, concurrency: int):
        self.proc = subprocess.Popen(
            [str(python), "-c", INSPECT_IN_PROCESS, base_url, str(concurrency)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "SIM_API_KEY": "bench", "INSPECT_DISPLAY": "none"})
        self._read()  # the warm-up eval

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"inspect eval() process ended: {_last_line(err)}")
        return json.loads(line)

    def run(self, *, n: int) -> Run:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        got = self._read()
        return Run(float(got["wall_s"]), int(got["ok"]))

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------- the benchmark


def cpu_per_call(n: int) -> dict[str, float]:
    """Client CPU per call (ms) of depsim's engine and of the reference loop, against a
    zero-latency simulator in another process (this process does nothing else meanwhile)."""
    out = {}
    with SimProcess() as fast:
        for name, fn in (("depsim", depsim_in_process), ("reference", reference)):
            fn(fast.base_url, n=50, concurrency=16)  # lazy imports are not per-call CPU
            cpu = time.process_time()
            fn(fast.base_url, n=n, concurrency=64)
            out[name] = round((time.process_time() - cpu) / n * 1000, 3)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print one JSON object (and a readable summary without --json)."""
    args = parse_args(argv)

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    load_start = [round(x, 2) for x in os.getloadavg()]
    extra: dict[str, Any] = {}
    systems: list[tuple[str, str]] = [(STORED, "depsim"), (IN_PROCESS, "depsim")]
    if args.workers > 1:
        systems.append((IN_PROCESS, "depsim_sharded"))
    systems.append((IN_PROCESS, "reference"))
    python = None
    if not args.no_inspect:
        try:
            python, version = ensure_inspect(args.inspect_venv, say)
            extra["inspect"] = {
                "version": version, "venv": str(args.inspect_venv),
                "in_process_storage": "log_samples=False, log_realtime=False: the log header "
                                      "only, in a temp folder (Inspect always writes a log)"}
            systems[1:1] = [(STORED, "inspect")]
            systems.append((IN_PROCESS, "inspect"))
        except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
            say(f"Inspect AI left out: {exc}")
            extra["inspect"] = {"error": str(exc)}
    results: dict[tuple[str, str], list[Run]] = {s: [] for s in systems}
    errors: list[str] = []
    loads: list[float] = []

    with tempfile.TemporaryDirectory(prefix="depsim-bench-") as tmp, \
            SimProcess(f"latency_ms={args.latency_ms:g}") as sim:
        template = Path(tmp) / "home"
        _seed_home(template, sim.base_url, args.n, args.concurrency)
        pool = ShardPool(args.workers) if args.workers > 1 else None
        inspect_proc = None
        try:
            if pool is not None:
                pool.warm()
            inspect_failed = ""
            if python is not None:
                try:
                    inspect_proc = InspectInProcess(python, sim.base_url, args.concurrency)
                except (OSError, RuntimeError, ValueError) as exc:
                    inspect_failed = str(exc)
            depsim_in_process(sim.base_url, n=8, concurrency=8)  # imports, first connections
            runners: dict[tuple[str, str], Callable[[], Run]] = {
                (STORED, "depsim"): lambda: depsim_stored(
                    template, n=args.n, concurrency=args.concurrency),
                (IN_PROCESS, "depsim"): lambda: depsim_in_process(
                    sim.base_url, n=args.n, concurrency=args.concurrency),
                (IN_PROCESS, "reference"): lambda: reference(
                    sim.base_url, n=args.n, concurrency=args.concurrency),
            }
            if pool is not None:
                runners[(IN_PROCESS, "depsim_sharded")] = lambda: depsim_sharded(
                    pool, sim.base_url, n=args.n, concurrency=args.concurrency)
            if python is not None:
                py, proc = python, inspect_proc
                runners[(STORED, "inspect")] = lambda: inspect_stored(
                    py, sim.base_url, n=args.n, concurrency=args.concurrency)

                def inspect_in_process() -> Run:
                    if proc is None:
                        raise RuntimeError(f"inspect eval() process did not start: "
                                           f"{inspect_failed}")
                    return proc.run(n=args.n)

                runners[(IN_PROCESS, "inspect")] = inspect_in_process
            for mode, name in interleaved(systems, args.runs):
                try:
                    run = runners[(mode, name)]()
                except Exception as exc:  # noqa: BLE001 - one failed run is a line, not the end
                    errors.append(f"{mode}/{name}: {type(exc).__name__}: {exc}")
                    say(f"{mode}/{name}: failed: {exc}")
                    continue
                if run.ok != args.n:
                    errors.append(f"{mode}/{name}: {run.ok} of {args.n} answers ok")
                results[(mode, name)].append(run)
                loads.append(os.getloadavg()[0])
                say(f"{mode}/{name}: {run.wall_s:.2f} s, {run.ok}/{args.n} ok, "
                    f"load {loads[-1]:.2f}")
        finally:
            if inspect_proc is not None:
                inspect_proc.close()
            if pool is not None:
                pool.close()
    extra["cpu_ms_per_call"] = cpu_per_call(args.cpu_n)
    extra["load_avg"] = {"start": load_start, "end": [round(x, 2) for x in os.getloadavg()],
                         "after_each_run_1min": [round(x, 2) for x in loads],
                         "cores": os.cpu_count()}
    out = report(args, results, errors, extra)
    if not args.json:
        say(f"ideal {out['ideal_s']} s (N={args.n}, C={args.concurrency}, "
            f"latency {args.latency_ms:g} ms); median [min, max] of {args.runs} runs:")
        for mode in (STORED, IN_PROCESS):
            for name, s in out[mode].items():
                say(f"  {mode:10} {name:15} {s['median_s']} s [{s['min_s']}, {s['max_s']}]")
            say(f"  {mode} ratios: {out[f'{mode}_ratios']}")
        say(f"  load average {out['load_avg']['start']} -> {out['load_avg']['end']} "
            f"on {os.cpu_count()} cores")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        print(f"replay_throughput: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
