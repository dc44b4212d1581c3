"""Replay throughput: depsim's engine against a bare openai loop, Inspect AI and the ideal.

Starts the simulator in its own process with a fixed per-request latency, then replays the
same N prefixes at concurrency C:

- ``depsim``: the engine the ``candidate_completions`` asset uses (``CallEngine`` +
  ``replay_requests``: adaptive concurrency, retries, seeds, outcome capture) on depsim's
  client (the ``openai`` async client over its aiohttp transport);
- ``reference``: a bare asyncio loop over the ``openai`` async client with its default
  transport and a semaphore;
- ``inspect``: UK AISI's Inspect AI, ``inspect eval`` of a one-line generate task with its
  OpenAI-compatible provider on the same endpoint and connection limit (installed by this
  script into its own venv, ``--inspect-venv``; skipped with ``--no-inspect``);
- ``ideal``: N x latency / C.

A second pass against a zero-latency simulator gives client CPU per call (process CPU time
of this process, which does nothing else meanwhile). Ratios compare runs of the same process
on the same machine, so a shared, noisy machine moves them less than absolute times.

    python benchmarks/replay_throughput.py [--n 4000] [--concurrency 256] \
        [--latency-ms 1000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import openai

from depsim_assets.endpoints import async_client
from depsim_assets.models import CallEngine, Limits
from depsim_assets.replay.engine import ReplayRequest, replay_requests
from depsim_assets.sim.process import SimProcess

MODEL = "sim-production"


def _requests(n: int) -> list[ReplayRequest]:
    return [ReplayRequest(f"bench-{i}", 0, [{"role": "user", "content": f"Plan a trip, #{i}."}])
            for i in range(n)]


def _client(base_url: str, concurrency: int) -> openai.AsyncOpenAI:
    # The default connection pool is smaller than a large C: give both loops the same pool.
    import httpx2 as httpx  # the transport openai 3.x ships with

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return openai.AsyncOpenAI(
        base_url=base_url, api_key="bench", max_retries=0, timeout=120,
        http_client=openai.DefaultAsyncHttpxClient(limits=limits),
    )


async def _depsim(base_url: str, n: int, concurrency: int) -> tuple[float, float, int]:
    reqs = _requests(n)
    # depsim's own client: aiohttp transport, connections kept at the concurrency.
    client = async_client(base_url, api_key_env=None, timeout_s=120, max_retries=0,
                          max_connections=concurrency)
    async with client:
        cpu, wall = time.process_time(), time.perf_counter()
        engine = CallEngine(Limits(max_concurrency=concurrency, max_retries=0))
        outs = await replay_requests(client, reqs, engine=engine, model=MODEL, params={})
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return wall, cpu, sum(o.status == "ok" for o in outs)


async def _reference(base_url: str, n: int, concurrency: int) -> tuple[float, float, int]:
    reqs = _requests(n)
    semaphore = asyncio.Semaphore(concurrency)
    async with _client(base_url, concurrency) as client:
        async def one(r: ReplayRequest) -> bool:
            async with semaphore:
                resp = await client.chat.completions.create(model=MODEL, messages=r.messages)
                return bool(resp.choices[0].message.content)

        cpu, wall = time.process_time(), time.perf_counter()
        oks = await asyncio.gather(*(one(r) for r in reqs))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return wall, cpu, sum(oks)


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


def _inspect(venv: Path, base_url: str, n: int, concurrency: int) -> float | None:
    """Wall time of ``inspect eval`` (installing Inspect AI into ``venv`` first if needed)."""
    inspect = venv / "bin" / "inspect"
    if not inspect.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "inspect-ai", "openai"],
                       check=True)
    with tempfile.TemporaryDirectory() as tmp:
        task = Path(tmp) / "replay_task.py"
        task.write_text(INSPECT_TASK)
        env = {**os.environ, "SIM_BASE_URL": base_url, "SIM_API_KEY": "bench",
               "INSPECT_LOG_DIR": str(Path(tmp) / "logs"), "INSPECT_DISPLAY": "none"}
        cmd = [str(inspect), "eval", task.name, "--model", f"openai-api/sim/{MODEL}",
               "-T", f"n={n}", "--max-connections", str(concurrency), "--max-retries", "0",
               "--no-log-images"]
        start = time.perf_counter()
        done = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True)
        wall = time.perf_counter() - start
    if done.returncode != 0:
        print(f"inspect eval failed: {done.stderr.strip()[-400:]}", file=sys.stderr)
        return None
    return wall


def main() -> None:
    """Run the passes and print one JSON line (and a readable summary without --json)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--latency-ms", type=float, default=1000)
    ap.add_argument("--cpu-n", type=int, default=2000, help="calls in the zero-latency pass")
    ap.add_argument("--no-inspect", action="store_true")
    ap.add_argument("--inspect-venv", type=Path, default=Path(".bench-venv-inspect"))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    sim = SimProcess(f"latency_ms={args.latency_ms:g}")
    try:
        depsim_s, _, depsim_ok = asyncio.run(_depsim(sim.base_url, args.n, args.concurrency))
        reference_s, _, ref_ok = asyncio.run(_reference(sim.base_url, args.n, args.concurrency))
        inspect_s = None if args.no_inspect else _inspect(
            args.inspect_venv, sim.base_url, args.n, args.concurrency)
    finally:
        sim.close()
    fast = SimProcess()
    try:
        _, depsim_cpu, _ = asyncio.run(_depsim(fast.base_url, args.cpu_n, 64))
        _, ref_cpu, _ = asyncio.run(_reference(fast.base_url, args.cpu_n, 64))
    finally:
        fast.close()
    ideal = args.n * args.latency_ms / 1000 / args.concurrency
    out = {
        "n": args.n, "concurrency": args.concurrency, "latency_ms": args.latency_ms,
        "ideal_s": round(ideal, 3), "depsim_s": round(depsim_s, 3),
        "reference_s": round(reference_s, 3),
        "inspect_s": round(inspect_s, 3) if inspect_s is not None else None,
        "depsim_over_ideal": round(depsim_s / ideal, 3) if ideal else None,
        "depsim_over_inspect": round(depsim_s / inspect_s, 3) if inspect_s else None,
        "depsim_cpu_ms_per_call": round(depsim_cpu / args.cpu_n * 1000, 3),
        "reference_cpu_ms_per_call": round(ref_cpu / args.cpu_n * 1000, 3),
        "ok": {"depsim": depsim_ok, "reference": ref_ok},
    }
    if not args.json:
        print(f"ideal {out['ideal_s']} s, depsim {out['depsim_s']} s, reference "
              f"{out['reference_s']} s, inspect {out['inspect_s']} s", file=sys.stderr)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
