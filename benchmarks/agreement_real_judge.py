"""The real local judge against human labels: `depsim judge-agreement` on a rated set.

A *rated set* is JSONL, one judged reply per line (the shape public human-rated safety sets
convert to; docs/real-model.md says how):

    {"id": "lab-000", "conversation": [{"role": "user", "content": "..."}],
     "reply": "...", "category": "fabricated_facts", "label": 1, "severity": 3,
     "annotator": "ana"}

``conversation`` is everything before the rated reply (OpenAI chat messages), ``reply`` the
rated assistant reply, ``category`` a taxonomy id (or ``any``), ``label`` the human's flag
(0/1); ``severity`` (0-4) and ``annotator`` are optional. This script turns it into what
depsim reads — a one-day production log (each conversation with the rated reply as its final
turn) and a labels file for `depsim judge-agreement` — grades the day's production replies
with the judge through Dagster, and prints the agreement table (kappa, precision, recall).
Printed, not tuned.

    .venv/bin/python benchmarks/agreement_real_judge.py      # builds/starts llama-server
    .venv/bin/python benchmarks/agreement_real_judge.py --flavour python
    .venv/bin/python benchmarks/agreement_real_judge.py --base-url URL --model NAME
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_SET = ROOT / "depsim_tests" / "real_model" / "labels.jsonl"
DAY = "2026-10-01"


def convert(rated: Path, log_root: Path, labels_out: Path) -> int:
    """Write the production log day and depsim's labels file; the number of rated replies."""
    folder = log_root / DAY
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    with (rated.open(encoding="utf-8") as src,
          (folder / "part-00000.jsonl").open("w", encoding="utf-8") as log,
          labels_out.open("w", encoding="utf-8") as labels):
        for number, line in enumerate(src, start=1):
            if not line.strip():
                continue
            rec = json.loads(line)
            missing = {"id", "conversation", "reply", "category", "label"} - set(rec)
            if missing:
                raise SystemExit(f"{rated}:{number}: missing field(s) {sorted(missing)}")
            messages = [*rec["conversation"], {"role": "assistant", "content": rec["reply"]}]
            log.write(json.dumps({
                "conversation_id": rec["id"], "created_at": f"{DAY}T12:00:{n % 60:02d}Z",
                "user_id": f"rated-{n}", "opted_out": False, "source": "chat",
                "model": "rated-set", "messages": messages}) + "\n")
            label = {"conversation_id": rec["id"], "category": rec["category"],
                     "label": int(rec["label"])}
            if rec.get("annotator"):
                label["annotator"] = rec["annotator"]
            labels.write(json.dumps(label) + "\n")
            n += 1
    return n


def grade(home: Path, n: int, base_url: str, model: str, timeout_s: float) -> dict:
    """Sample the day whole and grade its production replies with the judge at ``base_url``."""
    import dagster as dg

    from depsim_assets import runs
    from depsim_assets.definitions import ASSETS, build_resources
    from depsim_assets.partitions import PRODUCTION, multi_key
    from depsim_assets.resources import JudgeEndpoint
    from depsim_demo import registry as demo

    with dg.DagsterInstance.ephemeral() as instance:
        demo.register_sim_candidates()
        runs.ensure_candidate_partitions(instance, [])
        plan = [r for r in runs.plan_graph([DAY], [], sample_size=n)
                if r.partition_key is not None]
        runs.execute(plan, instance)
        judge = JudgeEndpoint(base_url=base_url, model=model, context_window=8192,
                              timeout_s=timeout_s, max_retries=1, max_concurrency=2)
        result = dg.materialize(ASSETS, selection=["judge_grades"], instance=instance,
                                partition_key=str(multi_key(PRODUCTION, DAY)),
                                resources={**build_resources(), "judge": judge})
        (mat,) = result.asset_materializations_for_node("judge_grades")
        return {k: v.value for k, v in mat.metadata.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rated", type=Path, default=DEFAULT_SET, help="rated set (JSONL)")
    parser.add_argument("--base-url", help="a judge server already running (else one is started)")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--flavour", choices=("native", "python"), default="native")
    parser.add_argument("--timeout-s", type=float, default=900)
    parser.add_argument("--home", type=Path, help="depsim home to use (default: a temp folder)")
    args = parser.parse_args(argv)
    home = args.home or Path(tempfile.mkdtemp(prefix="agreement-"))
    os.environ["DEPSIM_HOME"] = str(home)
    os.environ.pop("DEPSIM_WAREHOUSE", None)
    os.environ["DEPSIM_MIN_SAMPLE"] = "1"
    # Sampling refuses to run without a salt; a throwaway one is right for a one-off set.
    os.environ.setdefault("DEPSIM_DEID_SALT", secrets.token_hex(16))
    # A verdict the judge cannot give is reported as unmatched, never as agreement: let the
    # blocking unscored-share check through so the table shows how many there were.
    os.environ["DEPSIM_MAX_UNSCORED_SHARE"] = "1.0"

    from depsim_assets import config

    labels = home / "labels.depsim.jsonl"
    n = convert(args.rated, config.log_root(), labels)
    server = None
    base_url = args.base_url
    if base_url is None:
        from depsim_tests.real_model import servers

        server = servers.start(args.flavour, home / "server.log")
        base_url = server.base_url
    started = time.monotonic()
    try:
        meta = grade(home, n, base_url, args.model, args.timeout_s)
    finally:
        if server is not None:
            server.stop()
    print(f"graded {n} rated replies with {args.model} at {base_url} in "
          f"{time.monotonic() - started:.0f} s: mode {meta.get('structured_output')}, "
          f"layouts {meta.get('layouts_used')}, unscored {meta.get('unscored_reasons')}")
    depsim = Path(sys.executable).with_name("depsim")
    cmd = [str(depsim), "judge-agreement", "--labels", str(labels)]
    print("$ depsim judge-agreement --labels", labels, flush=True)
    return subprocess.run(cmd, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())
