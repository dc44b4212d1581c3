"""What de-identification costs per conversation, before and after the international detectors.

Run by hand (not part of the test suite)::

    .venv/bin/python benchmarks/deid_cost.py [--json] [--conversations N] [--runs R]

Both versions de-identify the same conversations in the same process: the current
``depsim_assets.traffic.deid`` and the one before ``detectors.py`` existed, read from git
(``--baseline-rev``; default: the parent of the commit that added ``detectors.py``, or HEAD
before it is committed) and loaded as a module. Two sets are timed:

- ``synthetic``: a day of the demo log (multi-turn chat, tool calls, planted PII), the shape
  ``depsim sample`` de-identifies;
- ``adversarial``: the adversarial corpus of ``depsim_tests/traffic/adversarial_corpus.py``
  (international PII in every placement);
- ``real_text``: PII-free conversations of real code, configs and docs from the installed
  packages (``depsim_tests/traffic/real_text_corpus.py``): long technical turns, the
  expensive case for pattern detectors.

Each set is run once to warm up (imports, Faker's name lists, Presidio's recognizers, stdnum's
data files: ``warmup_s`` reports that one-time cost of the current version), then ``--runs``
times; the median of the runs, in milliseconds per conversation, is reported.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEID_PATH = "depsim_assets/traffic/deid.py"


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()


def baseline_rev() -> str:
    """The commit before detectors.py was added (HEAD while it is not committed yet)."""
    added = _git(
        "log", "--diff-filter=A", "--format=%H", "--", "depsim_assets/traffic/detectors.py"
    )
    return f"{added.splitlines()[-1]}^" if added else "HEAD"


def load_baseline(rev: str) -> Any:
    source = _git("show", f"{rev}:{DEID_PATH}")
    if "detectors" in source:
        raise SystemExit(f"{rev}:{DEID_PATH} already uses detectors.py; pass --baseline-rev")
    spec = importlib.util.spec_from_loader("deid_baseline", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["deid_baseline"] = module  # dataclasses look their module up by name
    exec(compile(source, f"{rev}:{DEID_PATH}", "exec"), module.__dict__)  # noqa: S102
    return module


def synthetic(n: int) -> list[dict[str, Any]]:
    from depsim_demo.synth import demo_lines

    out = []
    for line in demo_lines("2026-11-30", n + n // 10, seed=3):
        if line.conversation_id is None:
            continue
        record = json.loads(line.text)
        if isinstance(record.get("messages"), list):
            out.append(record)
        if len(out) == n:
            break
    return out


def adversarial() -> list[dict[str, Any]]:
    from depsim_tests.traffic.adversarial_corpus import adversarial_records

    return [r for seed in range(3) for r in adversarial_records(seed)]


def real_text(n: int) -> list[dict[str, Any]]:
    from depsim_tests.traffic.real_text_corpus import real_corpus

    return [
        {"conversation_id": c.conversation_id, "messages": c.messages}
        for c in real_corpus(n).conversations
    ]


def _run(deidentifier: Any, records: list[dict[str, Any]]) -> float:
    start = time.perf_counter()
    for record in records:
        deidentifier.deidentify_messages(record["messages"], record.get("conversation_id", "c"))
    return (time.perf_counter() - start) * 1000 / len(records)


def measure(n: int, runs: int, rev: str) -> dict[str, Any]:
    from depsim_assets.traffic.deid import DEID_VERSION, Deidentifier

    old_module = load_baseline(rev)
    sets = {
        "synthetic": synthetic(n),
        "adversarial": adversarial(),
        "real_text": real_text(max(n // 2, 1)),
    }
    result: dict[str, Any] = {
        "baseline": f"{rev} ({old_module.DEID_VERSION})",
        "current": DEID_VERSION,
        "runs": runs,
    }
    start = time.perf_counter()
    new = Deidentifier("bench-salt")
    _run(new, sets["synthetic"][:20])
    result["warmup_s"] = round(time.perf_counter() - start, 2)
    old = old_module.Deidentifier("bench-salt")
    for name, records in sets.items():
        _run(old, records)
        _run(new, records)
        before = statistics.median(_run(old, records) for _ in range(runs))
        after = statistics.median(_run(new, records) for _ in range(runs))
        result[name] = {
            "conversations": len(records),
            "before_ms": round(before, 3),
            "after_ms": round(after, 3),
            "ratio": round(after / before, 1),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--baseline-rev", default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args.conversations, args.runs, args.baseline_rev or baseline_rev())
    if args.json:
        print(json.dumps(result))
        return
    print(f"baseline {result['baseline']}  vs  current {result['current']}")
    print(f"one-time warm-up of the current version: {result['warmup_s']} s")
    for name in ("synthetic", "adversarial", "real_text"):
        r = result[name]
        print(
            f"{name:12s} {r['conversations']:5d} conversations: {r['before_ms']:.3f} -> "
            f"{r['after_ms']:.3f} ms/conversation ({r['ratio']}x), median of {args.runs} runs"
        )


if __name__ == "__main__":
    main()
