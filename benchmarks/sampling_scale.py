"""One million conversations in a day: ingest, then sample 100,000 through Dagster.

Run by hand (not part of the test suite)::

    .venv/bin/python benchmarks/sampling_scale.py [--json] [--records N] [--sample N]
        [--repeat R] [--engines duckdb,python] [--deid-workers N[,M...]]

It writes a synthetic day of OpenAI-chat JSONL (2-6 messages per conversation, some planted
PII, tool calls, opted-out, multimodal and malformed records) under ``--workdir`` (default: a
temporary folder), then times, each phase in its own process so the memory of one does not
hide another's:

- ``ingest_s``: ``depsim ingest`` of the file into a fresh depsim home;
- ``sample_s``: ``depsim sample --size 100000`` on the DuckDB path (the default; a real
  Dagster materialization of ``sampled_conversations`` and ``conversation_prefixes``:
  validation, eligibility, sampling, de-identification, the residue check, prefixes);
- ``sample_python_s``: the same on the Python path (``DEPSIM_SAMPLING_ENGINE=python``);
- ``sample_workers{N}_s`` (with ``--deid-workers``): the DuckDB path's sample with
  ``DEPSIM_DEID_WORKERS=N`` de-identification processes (the default rule keeps one on a
  machine of two CPUs), each N timed as the others, on the same home;
- ``select_s`` / ``select_python_s``: the read phase alone on each path (validation,
  eligibility, the seeded bottom-k and reading the chosen records: what DuckDB replaces),
  without de-identification or Dagster;
- ``scan_s``: DuckDB ``count(*)`` over the same file;
- ``reservoir_s``: DuckDB reservoir sample of 100,000 rows of the file into a table.

Every timed phase is the median of ``--repeat`` runs (default 3; the scan and the reservoir
always 3), each in a fresh process. ``peak_rss_mib`` is the largest peak resident memory of
the ingest and DuckDB-path sample phases (``peak_rss_python_mib``: the Python path's).
``loadavg`` is ``os.getloadavg()`` before and after: the machine is shared. The Python
``json.loads`` loop over the file (the ingest target's reference) is timed too and printed on
stderr with the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATE = "2026-06-01"
WORDS = (
    "the a to and of in is it you that for on with this my can how what do be are not have "
    "please help me write code file data python error need want make time work day best way "
    "explain why when where which should would could thanks question answer list table query "
    "email report meeting project plan budget travel recipe health sleep exercise music book "
    "server deploy test build function class method value string number return loop array map"
).split()


def _sentence(rng: random.Random) -> str:
    words = rng.choices(WORDS, k=rng.randrange(8, 30))
    return " ".join(words).capitalize() + rng.choice((".", "?", "!"))


def generate(path: Path, records: int, seed: int = 1) -> int:
    """Write ``records`` JSONL lines; returns the bytes written."""
    rng = random.Random(seed)
    pool = [" ".join(_sentence(rng) for _ in range(rng.randrange(1, 4))) for _ in range(4000)]
    pii = (
        " You can reach me at jane.doe{}@gmail.com.",
        " My number is (415) 867-{:04d}.",
        "\n\nThanks, Priya",
        " My name is Tom Novak.",
        " I live at {} Maple Street.",
    )
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(records):
            n_messages = rng.randrange(2, 7)
            messages = []
            if n_messages % 2 == 1:
                messages.append({"role": "system", "content": "You are a helpful assistant."})
            role = "user"
            while len(messages) < n_messages:
                text = rng.choice(pool)
                if role == "user" and rng.random() < 0.1:
                    text += rng.choice(pii).format(rng.randrange(10_000))
                messages.append({"role": role, "content": text})
                role = "assistant" if role == "user" else "user"
            if rng.random() < 0.05:
                call = {
                    "id": f"call_{i}",
                    "type": "function",
                    "function": {"name": "web_search", "arguments": '{"query": "weather"}'},
                }
                messages[-1:-1] = [
                    {"role": "assistant", "content": None, "tool_calls": [call]},
                    {"role": "tool", "tool_call_id": f"call_{i}", "content": '{"temp_c": 21}'},
                ]
            record = {
                "conversation_id": f"c{i:08d}",
                "created_at": f"{DATE}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:00Z",
                "user_id": f"u{rng.randrange(300_000)}",
                "opted_out": rng.random() < 0.02,
                "source": rng.choice(("chat", "chat", "api", "mobile")),
                "model": "prod-model",
                "messages": messages,
            }
            roll = rng.random()
            if roll < 0.02:
                first = messages[1] if messages[0]["role"] == "system" else messages[0]
                first["content"] = [
                    {"type": "text", "text": first["content"]},
                    {"type": "image_url", "image_url": {"url": "https://img.example.net/x.png"}},
                ]
            line = json.dumps(record, separators=(",", ":"))
            if roll > 0.995:
                line = line[: len(line) // 2]  # malformed: cut in half
            fh.write(line)
            fh.write("\n")
    return path.stat().st_size


# --- phases, each run in a child process ---------------------------------------------------------


def phase_json_loop(path: Path) -> dict[str, float]:
    start = time.perf_counter()
    n = 0
    with open(path, "rb") as fh:
        for line in fh:
            try:
                json.loads(line)
            except ValueError:
                pass
            n += 1
    return {"seconds": time.perf_counter() - start, "lines": n}


def phase_ingest(path: Path, home: Path) -> dict[str, float]:
    os.environ["DEPSIM_HOME"] = str(home)
    from depsim_assets.traffic.ingest import ingest_files

    start = time.perf_counter()
    result = ingest_files([path], date=DATE)
    return {"seconds": time.perf_counter() - start, "records": result.records_in}


def phase_select(home: Path, size: int, engine: str) -> dict[str, float]:
    from depsim_assets.traffic.eligibility import EligibilityConfig

    if engine == "duckdb":
        from depsim_assets.traffic.fast_sample import select_duckdb as select
    else:
        from depsim_assets.traffic.pipeline import select_python as select

    cpu = _cpu()
    start = time.perf_counter()
    sel = select(
        home / "logs" / "production",
        DATE,
        n=size,
        fraction=None,
        seed=20261126,
        eligibility=EligibilityConfig(),
        max_line_bytes=1 << 20,
        stratify_by=None,
    )
    seconds = time.perf_counter() - start
    chosen = sum(len(v) for v in sel.samples.values())
    return {"seconds": seconds, "chosen": chosen, "cpu_s": _cpu() - cpu, **sel.engine}


def _cpu() -> float:
    """CPU seconds of this process and its finished children (de-identification workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def phase_sample(
    home: Path, size: int, engine: str = "duckdb", workers: int = 0
) -> dict[str, float]:
    os.environ["DEPSIM_SAMPLING_ENGINE"] = engine
    if workers:
        os.environ["DEPSIM_DEID_WORKERS"] = str(workers)
    os.environ["DEPSIM_HOME"] = str(home)
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    # Sampling refuses to run without a secret salt; a throwaway one suits synthetic traffic.
    if not os.environ.get("DEPSIM_DEID_SALT"):
        import secrets

        os.environ["DEPSIM_DEID_SALT"] = secrets.token_hex(32)
    import contextlib
    import io

    from depsim_assets import cli

    out = io.StringIO()
    cpu = _cpu()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):
        code = cli.main(["sample", "--date", DATE, "--size", str(size), "--json"])
    seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"depsim sample failed with exit code {code}")
    return {"seconds": seconds, "cpu_s": _cpu() - cpu, **json.loads(out.getvalue())}


def phase_scan(path: Path) -> dict[str, float]:
    import duckdb

    conn = duckdb.connect()
    start = time.perf_counter()
    n = conn.execute(
        "SELECT count(*) FROM read_json(?, format='newline_delimited', ignore_errors=true)",
        [str(path)],
    ).fetchone()[0]
    return {"seconds": time.perf_counter() - start, "rows": n}


def phase_reservoir(path: Path, size: int, workdir: Path) -> dict[str, float]:
    import duckdb

    conn = duckdb.connect(str(workdir / "reservoir.duckdb"))
    start = time.perf_counter()
    conn.execute(
        "CREATE OR REPLACE TABLE r AS SELECT * FROM read_json(?, format='newline_delimited', "
        f"ignore_errors=true) USING SAMPLE reservoir({int(size)} ROWS) REPEATABLE (7)",
        [str(path)],
    )
    n = conn.execute("SELECT count(*) FROM r").fetchone()[0]
    return {"seconds": time.perf_counter() - start, "rows": n}


def _median(args: list[str], repeat: int) -> tuple[dict, float, list[float]]:
    """``_child`` ``repeat`` times: the run of median time, the largest peak RSS, all times."""
    runs = [_child(args) for _ in range(max(1, repeat))]
    runs.sort(key=lambda r: r[0]["seconds"])
    result, _ = runs[len(runs) // 2]
    return result, max(rss for _, rss in runs), [round(r["seconds"], 2) for r, _ in runs]


def _child(args: list[str]) -> tuple[dict, float]:
    """Run one phase in a fresh interpreter; returns its result and its peak RSS in MiB."""
    proc = subprocess.run(
        [sys.executable, __file__, "--phase", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"phase {args[0]} failed:\n{proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result, result.pop("peak_rss_mib")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=100_000)
    parser.add_argument("--workdir", type=Path, help="keep files here (default: a temp dir)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timed phase (median)")
    parser.add_argument(
        "--engines", default="duckdb,python", help="sampling paths to time (comma-separated)"
    )
    parser.add_argument(
        "--deid-workers", default="",
        help="also time the DuckDB path's sample with these DEPSIM_DEID_WORKERS (comma-separated)",
    )
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:
        name, *rest = args.phase
        if name == "json_loop":
            out = phase_json_loop(Path(rest[0]))
        elif name == "ingest":
            out = phase_ingest(Path(rest[0]), Path(rest[1]))
        elif name == "sample":
            out = phase_sample(Path(rest[0]), int(rest[1]), rest[2],
                               int(rest[3]) if len(rest) > 3 else 0)
        elif name == "select":
            out = phase_select(Path(rest[0]), int(rest[1]), rest[2])
        elif name == "scan":
            out = phase_scan(Path(rest[0]))
        else:
            out = phase_reservoir(Path(rest[0]), int(rest[1]), Path(rest[2]))
        out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(out))
        return 0

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="depsim-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "day.jsonl"
    home = workdir / "home"
    shutil.rmtree(home, ignore_errors=True)
    say = sys.stderr
    start = time.perf_counter()
    size = generate(path, args.records)
    print(f"generated {args.records} records, {size / 2**20:.0f} MiB, "
          f"in {time.perf_counter() - start:.1f} s: {path}", file=say)  # fmt: skip

    engines = [e for e in args.engines.split(",") if e]
    load_before = [round(x, 2) for x in os.getloadavg()]
    loop, _ = _child(["json_loop", str(path)])
    ingest, ingest_rss = _child(["ingest", str(path), str(home)])
    samples: dict[str, tuple[dict, float, list[float]]] = {}
    selects: dict[str, tuple[dict, float, list[float]]] = {}
    for engine in engines:
        selects[engine] = _median(["select", str(home), str(args.sample), engine], args.repeat)
        samples[engine] = _median(["sample", str(home), str(args.sample), engine], args.repeat)
    by_workers = {
        int(w): _median(["sample", str(home), str(args.sample), engines[0], w], args.repeat)
        for w in args.deid_workers.split(",") if w.strip()
    }
    scan, _, _ = _median(["scan", str(path)], 3)
    reservoir, reservoir_rss, reservoir_runs = _median(
        ["reservoir", str(path), str(args.sample), str(workdir)], 3
    )
    load_after = [round(x, 2) for x in os.getloadavg()]

    ref = reservoir["seconds"]
    main_engine = engines[0]
    sample, sample_rss, _ = samples[main_engine]
    result: dict = {
        "records": ingest["records"],
        "sampled": sample["sampled"],
        "ingest_s": round(ingest["seconds"], 2),
        "sample_s": round(sample["seconds"], 2),
        "scan_s": round(scan["seconds"], 2),
        "reservoir_s": round(ref, 2),
        "sample_over_reservoir": round(sample["seconds"] / ref, 2),
        "peak_rss_mib": round(max(ingest_rss, sample_rss)),
        "engine": main_engine,
    }
    for engine in engines:
        sel, sel_rss, sel_runs = selects[engine]
        smp, smp_rss, smp_runs = samples[engine]
        suffix = "" if engine == main_engine else f"_{engine}"
        result[f"sample{suffix}_s"] = round(smp["seconds"], 2)
        result[f"sample{suffix}_over_reservoir"] = round(smp["seconds"] / ref, 2)
        result[f"sample{suffix}_runs_s"] = smp_runs
        result[f"sample{suffix}_cpu_s"] = round(smp["cpu_s"], 1)
        result[f"select{suffix}_s"] = round(sel["seconds"], 2)
        result[f"select{suffix}_over_reservoir"] = round(sel["seconds"] / ref, 2)
        result[f"select{suffix}_cpu_s"] = round(sel["cpu_s"], 1)
        result[f"select{suffix}_runs_s"] = sel_runs
        result[f"peak_rss{suffix}_mib"] = round(max(smp_rss, sel_rss))
        if "python_lines" in sel:
            result[f"python_decided_lines{suffix}"] = sel["python_lines"]
            result[f"python_read_files{suffix}"] = sel["python_files"]
        if smp["sampled"] != sample["sampled"] or smp["eligible"] != sample["eligible"]:
            raise SystemExit(f"the {engine} path sampled differently: {smp} vs {sample}")
    for workers, (smp, smp_rss, smp_runs) in by_workers.items():
        result[f"sample_workers{workers}_s"] = round(smp["seconds"], 2)
        result[f"sample_workers{workers}_over_reservoir"] = round(smp["seconds"] / ref, 2)
        result[f"sample_workers{workers}_runs_s"] = smp_runs
        result[f"sample_workers{workers}_cpu_s"] = round(smp["cpu_s"], 1)
        result[f"peak_rss_workers{workers}_mib"] = round(smp_rss)
        if smp["sampled"] != sample["sampled"]:
            raise SystemExit(f"{workers} de-identification processes sampled differently")
    result["reservoir_runs_s"] = reservoir_runs
    result["loadavg_before"] = load_before
    result["loadavg_after"] = load_after
    result["cpus"] = os.cpu_count()
    print(
        f"json.loads loop {loop['seconds']:.2f} s; ingest/loop "
        f"{ingest['seconds'] / loop['seconds']:.2f}x (target 3x); sample/reservoir "
        f"{result['sample_over_reservoir']}x (target 5x); peak RSS ingest {ingest_rss:.0f} MiB, "
        f"sample {sample_rss:.0f} MiB, reservoir {reservoir_rss:.0f} MiB; funnel: "
        + json.dumps({k: sample[k] for k in ("quarantined", "ineligible", "eligible")}),
        file=say,
    )
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>22}: {value}")
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
