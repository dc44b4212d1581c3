"""What de-identification costs per conversation, before and after the international detectors.

Run by hand (not part of the test suite)::

    .venv/bin/python benchmarks/deid_cost.py [--json] [--conversations N] [--runs R]
    .venv/bin/python benchmarks/deid_cost.py --equal REV [--json] [--conversations N] [--runs R]

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

``--equal REV`` is the other mode: the sampled-conversation path (``depsim sample``'s work for
each sampled record: ``pipeline._sampled_row`` then ``pipeline.residual_hits``) with the
de-identifier, its detectors and the residue check of ``REV`` against those of the work tree,
on the same records read from JSONL by the log reader. Every row (messages, tools, counts,
surrogate digests...) and every residue hit must be equal, else it exits non-zero naming the
set and conversation; it then reports the milliseconds per conversation of both (median of
``--runs``, alternating, same process). Sets: the synthetic day of
``benchmarks/sampling_scale.py`` (``--conversations``), the adversarial corpus (seeds 0-2), the
real-text corpus and the planted-PII corpus of ``depsim_tests/traffic/corpus.py``, plus the
synthetic day with every sentence made unique (``synthetic_unique``), so a speed-up cannot
come from texts repeating.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEID_PATH = "depsim_assets/traffic/deid.py"
DETECTORS_PATH = "depsim_assets/traffic/detectors.py"
RESIDUE_PATH = "depsim_assets/traffic/residue.py"
DATE = "2026-06-01"
SALT = "bench-salt"


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
    return _exec_module("deid_baseline", source, f"{rev}:{DEID_PATH}")


def _exec_module(name: str, source: str, origin: str) -> Any:
    spec = importlib.util.spec_from_loader(name, loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up by name
    exec(compile(source, origin, "exec"), module.__dict__)  # noqa: S102
    return module


def load_revision(rev: str) -> tuple[Any, Any]:
    """(deid, residue) as they were at ``rev``, deid bound to that revision's detectors.py."""
    import depsim_assets.traffic as traffic_package
    import depsim_assets.traffic.detectors as current_detectors

    detectors = _exec_module(
        "detectors_at_rev", _git("show", f"{rev}:{DETECTORS_PATH}"), f"{rev}:{DETECTORS_PATH}"
    )
    # deid imports its detectors as ``from depsim_assets.traffic import detectors``: point that
    # name at the old module while the old deid is executed, then put the current one back.
    traffic_package.detectors = detectors  # type: ignore[attr-defined]
    sys.modules["depsim_assets.traffic.detectors"] = detectors
    try:
        deid = _exec_module("deid_at_rev", _git("show", f"{rev}:{DEID_PATH}"), f"{rev}:{DEID_PATH}")
    finally:
        traffic_package.detectors = current_detectors  # type: ignore[attr-defined]
        sys.modules["depsim_assets.traffic.detectors"] = current_detectors
    residue = _exec_module(
        "residue_at_rev", _git("show", f"{rev}:{RESIDUE_PATH}"), f"{rev}:{RESIDUE_PATH}"
    )
    return deid, residue


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


# --- --equal: the same sampled rows and residue hits as REV, and what each costs ------------


def _read_records(path: Path) -> list[Any]:
    from depsim_assets.traffic.logs import LogFile, LogRecord, read_log_file

    entry = LogFile(path=path, source_file=path.name, compression=None)
    return [r for r in read_log_file(entry, 1 << 24) if isinstance(r, LogRecord)]


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for i, record in enumerate(records):
            line = {"source": "chat", "model": "prod-model", "user_id": f"u{i}", **record}
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")
    return path


def _unique_day(path: Path, out: Path) -> Path:
    """The synthetic day with a fresh random sentence before every message text, so no two
    texts are equal (the generator draws its texts from a pool of 4,000)."""
    import random

    import sampling_scale  # type: ignore[import-not-found]

    rng = random.Random(7)
    seen: set[str] = set()
    with open(path, encoding="utf-8") as src, open(out, "w", encoding="utf-8") as dst:
        for line in src:
            try:
                record = json.loads(line)
            except ValueError:
                dst.write(line)
                continue
            for message in record.get("messages") or [] if isinstance(record, dict) else []:
                if isinstance(message, dict) and isinstance(message.get("content"), str):
                    text = f"{sampling_scale._sentence(rng)} {message['content']}"
                    while text in seen:
                        text = f"{sampling_scale._sentence(rng)} {text}"
                    seen.add(text)
                    message["content"] = text
            dst.write(json.dumps(record, ensure_ascii=False) + "\n")
    return out


def equal_sets(n: int, workdir: Path) -> dict[str, list[Any]]:
    """The record sets of ``--equal``, as the log reader yields them."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import sampling_scale  # type: ignore[import-not-found]

    from depsim_tests.traffic.adversarial_corpus import adversarial_records
    from depsim_tests.traffic.corpus import planted_corpus
    from depsim_tests.traffic.real_text_corpus import real_corpus

    day = workdir / "day.jsonl"
    sampling_scale.generate(day, n)
    return {
        "synthetic": _read_records(day),
        "synthetic_unique": _read_records(_unique_day(day, workdir / "day_unique.jsonl")),
        "adversarial": _read_records(
            _write_jsonl(
                workdir / "adversarial.jsonl",
                [r for seed in range(3) for r in adversarial_records(seed)],
            )
        ),
        "real_text": _read_records(
            _write_jsonl(
                workdir / "real_text.jsonl",
                [
                    {"conversation_id": c.conversation_id, "messages": c.messages}
                    for c in real_corpus(max(n // 5, 1)).conversations
                ],
            )
        ),
        "planted": _read_records(
            _write_jsonl(
                workdir / "planted.jsonl",
                [
                    {"conversation_id": c.conversation_id, "messages": c.messages}
                    for c in planted_corpus(max(n // 5, 1))
                ],
            )
        ),
    }


def _sample_path(deid: Any, residue: Any, records: list[Any]) -> list[Any]:
    """What ``pipeline._deid_chunk`` computes for each record (row, counts, residue hits),
    with the given de-identifier and residue modules."""
    import dataclasses

    from depsim_assets.traffic import pipeline

    deidentifier = deid.Deidentifier(SALT)
    saved = pipeline.residue
    pipeline.residue = residue  # residual_hits calls its module's residue scan
    try:
        out = []
        for record in records:
            row, counts = pipeline._sampled_row(record, DATE, deidentifier, SALT, 1)
            hits = [dataclasses.astuple(h) for h in pipeline.residual_hits(row)]
            out.append((row, counts, hits))
        return out
    finally:
        pipeline.residue = saved


def _timed(deid: Any, residue: Any, records: list[Any]) -> tuple[float, float]:
    """Wall and CPU milliseconds per conversation (CPU: this process's, which other
    processes on a shared machine disturb less)."""
    start, cpu = time.perf_counter(), time.process_time()
    _sample_path(deid, residue, records)
    n = max(len(records), 1)
    return (time.perf_counter() - start) * 1000 / n, (time.process_time() - cpu) * 1000 / n


def check_equal(rev: str, n: int, runs: int) -> dict[str, Any]:
    """Outputs of REV and the work tree compared on every set, then timed."""
    import tempfile

    from depsim_assets.traffic import deid as new_deid
    from depsim_assets.traffic import residue as new_residue

    old_deid, old_residue = load_revision(rev)
    result: dict[str, Any] = {"baseline": rev, "runs": runs, "sets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        sets = equal_sets(n, Path(tmp))
    for name, records in sets.items():
        old = _sample_path(old_deid, old_residue, records)
        new = _sample_path(new_deid, new_residue, records)
        for record, a, b in zip(records, old, new, strict=True):
            if a != b:
                raise SystemExit(f"{name}: {record.conversation_id} differs from {rev}")
        befores, afters = [], []
        for _ in range(runs):
            befores.append(_timed(old_deid, old_residue, records))
            afters.append(_timed(new_deid, new_residue, records))
        before, after = (statistics.median(t[0] for t in ts) for ts in (befores, afters))
        before_cpu, after_cpu = (statistics.median(t[1] for t in ts) for ts in (befores, afters))
        texts = [
            m["content"] for r in records for m in r.messages
            if isinstance(m, dict) and isinstance(m.get("content"), str)
        ]  # fmt: skip
        result["sets"][name] = {
            "conversations": len(records),
            "equal": len(records),
            "unique_text_share": round(len(set(texts)) / max(len(texts), 1), 3),
            "hits": sum(len(x[2]) for x in new),
            "before_ms": round(before, 3),
            "after_ms": round(after, 3),
            "speedup": round(before / after, 2) if after else None,
            "before_cpu_ms": round(before_cpu, 3),
            "after_cpu_ms": round(after_cpu, 3),
            "cpu_speedup": round(before_cpu / after_cpu, 2) if after_cpu else None,
        }
    result["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--baseline-rev", default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--equal", metavar="REV", default=None,
        help="compare the sampled rows and residue hits with REV's, then time both",
    )  # fmt: skip
    args = parser.parse_args()
    if args.equal:
        result = check_equal(args.equal, args.conversations, args.runs)
        if args.json:
            print(json.dumps(result))
            return
        print(f"baseline {result['baseline']}  vs  the work tree; median of {args.runs} runs")
        for name, r in result["sets"].items():
            print(
                f"{name:17s} {r['equal']:6d} of {r['conversations']:6d} conversations equal "
                f"({r['hits']} residue hits, unique texts {r['unique_text_share']:.0%}): "
                f"{r['before_ms']:.3f} -> {r['after_ms']:.3f} ms/conversation "
                f"({r['speedup']}x); CPU {r['before_cpu_ms']:.3f} -> {r['after_cpu_ms']:.3f} ms "
                f"({r['cpu_speedup']}x)"
            )
        print(f"load average after: {result['loadavg']}")
        return
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
