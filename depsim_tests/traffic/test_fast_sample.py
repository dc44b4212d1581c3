"""The DuckDB sampling path against the Python one: the same day gives the same everything.

Each test writes a day (the poison corpus of test_poison.py, a corpus of lines built to split
DuckDB's JSON reading from Python's, lines across chunk boundaries) and compares what the two
readers select, then what ``run_sampling`` returns on each engine, row for row.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from pathlib import Path

import duckdb
import pytest
import zstandard

from depsim_assets.traffic import fast_sample, pipeline
from depsim_assets.traffic.eligibility import EligibilityConfig
from depsim_assets.traffic.logs import iter_log
from depsim_assets.traffic.pipeline import run_sampling, select_python
from depsim_assets.traffic.sample import sample_key
from depsim_tests.traffic.test_poison import DAY, good, record, write_poison

SALT = "s" * 64


def _conv(
    cid, *, user="How do I sort a dict by value?", reply="Use sorted(d.items(), key=...).", **fields
) -> dict:
    rec = {
        "conversation_id": cid,
        "created_at": f"{DAY}T08:00:00Z",
        "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": reply}],
    }
    rec.update(fields)
    return rec


def _tool_conv(cid: str, args: str = '{"q": "x"}', result: str = '{"ok": 1}') -> dict:
    call = {"id": "c1", "type": "function", "function": {"name": "search", "arguments": args}}
    return _conv(
        cid,
        messages=[
            {"role": "user", "content": "look it up"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": result},
            {"role": "assistant", "content": "found it"},
        ],
    )


def tricky_lines() -> list[str]:
    """Lines where a careless SQL reading would differ from Python's, and plain ones."""
    rng = random.Random(5)
    lines = [
        json.dumps(
            _conv(
                f"p{i}",
                source=rng.choice(["chat", "api", "internal_test"]),
                model=rng.choice(["m1", "m2"]),
                metadata={"tier": rng.choice(["free", "pro", True, 3, None])},
                opted_out=rng.random() < 0.1,
            )
        )
        for i in range(300)
    ]
    raw = [
        # duplicate keys: DuckDB reads the first, Python keeps the last
        '{"conversation_id": "dupkey1", "conversation_id": "dupkey2", "messages": '
        '[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}',
        '{"conversation_id": "dupmsg", "messages": [{"role": "user", "content": "hi"}, '
        '{"role": "assistant", "content": "ok", "content": "   "}]}',
        '{"conversation_id": "duprole", "messages": [{"role": "user", "content": "hi"}, '
        '{"role": "user", "role": "assistant", "content": "ok"}]}',
        '{"conversation_id": "dupopt", "opted_out": false, "opted_out": true, "messages": '
        '[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}',
        # what DuckDB's parser allows and Python's does not, or reads otherwise
        '{"conversation_id": "trailing", "messages": [{"role": "user", "content": "hi"}, '
        '{"role": "assistant", "content": "ok"},]}',
        '{"conversation_id": "nanlower", "score": nan, "messages": [{"role": "user", '
        '"content": "hi"}, {"role": "assistant", "content": "ok"}]}',
        '{"conversation_id": "nanpy", "score": NaN, "x": -Infinity, "messages": [{"role": '
        '"user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}',
        '{"conversation_id": "esc", "messages": [{"r\\u006fle": "user", "content": "hi"}, '
        '{"role": "assistant", "content": "ok"}]}',
        '{"conversation_id": "escrole", "messages": [{"role": "user", "content": "hi"}, '
        '{"role": "assistant", "role": "us\\u0065r", "content": "ok"}]}',
        '{"conversation_id": "emoji\\ud83d\\ude00", "messages": [{"role": "user", "content": '
        '"hi \\ud83d\\ude00"}, {"role": "assistant", "content": "ok"}]}',
        '{"conversation_id": "Messages-case", "Messages": [{"role": "user", "content": "hi"}]}',
        # ids
        '{"conversation_id": 12345, "messages": [{"role": "user", "content": "hi"}, '
        '{"role": "assistant", "content": "ok"}]}',
        '{"conversation_id": -0, "messages": [{"role": "user", "content": "hi"}, '
        '{"role": "assistant", "content": "ok"}]}',
        '{"conversation_id": 1.5, "messages": [{"role": "user", "content": "hi"}, '
        '{"role": "assistant", "content": "ok"}]}',
        '{"conversation_id": 123456789012345678901234567890, "messages": [{"role": "user", '
        '"content": "hi"}, {"role": "assistant", "content": "ok"}]}',
        '{"conversation_id": "\\u3000 ", "messages": [{"role": "user", "content": "hi"}, '
        '{"role": "assistant", "content": "ok"}]}',
        '{"conversation_id": "\u00a0", "messages": [{"role": "user", "content": "hi"}, '
        '{"role": "assistant", "content": "ok"}]}',
        '{"conversation_id": true, "messages": [{"role": "user", "content": "hi"}, '
        '{"role": "assistant", "content": "ok"}]}',
        '{"messages": [{"role": "user", "content": "no id"}, {"role": "assistant", '
        '"content": "derived"}]}',
        # replies that are blank only by Python's str.strip
        '{"conversation_id": "blank-ideo", "messages": [{"role": "user", "content": "hi"}, '
        '{"role": "assistant", "content": "\u3000\u2003\\u00a0"}]}',
        '{"conversation_id": "blank-nel", "messages": [{"role": "user", "content": "hi"}, '
        '{"role": "assistant", "content": "\\u0085\\u001c"}]}',
        '{"conversation_id": "refusal", "messages": [{"role": "user", "content": "hi"}, '
        '{"role": "assistant", "content": "", "refusal": "I cannot help with that."}]}',
        # fields of the wrong type, or odd but allowed
        '{"conversation_id": "srcnum", "source": 7, "model": "", "messages": [{"role": "user", '
        '"content": "hi"}, {"role": "assistant", "content": "ok"}]}',
        '{"conversation_id": "srcbool", "source": true, "messages": [{"role": "user", '
        '"content": "hi"}, {"role": "assistant", "content": "ok"}]}',
        '{"conversation_id": "srcfloat", "source": 1e3, "messages": [{"role": "user", '
        '"content": "hi"}, {"role": "assistant", "content": "ok"}]}',
        '{"conversation_id": "optnull", "opted_out": null, "messages": [{"role": "user", '
        '"content": "hi"}, {"role": "assistant", "content": "ok"}]}',
        '{"conversation_id": "optstr", "opted_out": "yes", "messages": [{"role": "user", '
        '"content": "hi"}, {"role": "assistant", "content": "ok"}]}',
        '{"conversation_id": "metalist", "metadata": [1], "messages": [{"role": "user", '
        '"content": "hi"}, {"role": "assistant", "content": "ok"}]}',
        '{"conversation_id": "metaobj", "metadata": {"tier": {"a": 1}}, "messages": '
        '[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}',
        '{"conversation_id": "metafloat", "metadata": {"tier": 2.0}, "messages": '
        '[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}',
        '{"conversation_id": "created-obj", "created_at": {}, "messages": [{"role": "user", '
        '"content": "hi"}, {"role": "assistant", "content": "ok"}]}',
        '{"conversation_id": "role-num", "messages": [{"role": 5, "content": "hi"}, '
        '{"role": "assistant", "content": "ok"}]}',
        '{"conversation_id": "role-bad", "messages": [{"role": "robot", "content": "hi"}, '
        '{"role": "assistant", "content": "ok"}]}',
        '{"conversation_id": "content-num", "messages": [{"role": "user", "content": 5}, '
        '{"role": "assistant", "content": "ok"}]}',
        '{"conversation_id": "last-user", "messages": [{"role": "assistant", "content": "hi"}, '
        '{"role": "user", "content": "ok"}]}',
        '{"conversation_id": "msg-str", "messages": ["user", {"role": "assistant", '
        '"content": "ok"}]}',
        '{"conversation_id": "msgs-empty", "messages": []}',
        '{"conversation_id": "nested-role", "metadata": {"role": "x"}, "messages": [{"role": '
        '"user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}',
        "[1, 2]",
        '"just a string"',
        '{"conversation_id": "unterminated", "messages": [',
        # ingest_origin variants
        json.dumps(_conv("orig1", ingest_origin={"file": "/in/a.jsonl", "line": 7})),
        json.dumps(_conv("orig2", ingest_origin={"file": "/in/a.jsonl", "line": True})),
        json.dumps(_conv("orig3", ingest_origin={"file": "/in/a.jsonl", "line": 2.5})),
        json.dumps(_conv("orig4", ingest_origin={"file": 3, "line": 9})),
        json.dumps(_conv("orig5", ingest_origin="nowhere")),
        json.dumps(_conv("orig1", ingest_origin={"file": "/in/b.jsonl", "line": 70})),
        # ingest stubs
        json.dumps(
            {
                "ingest_rejected": {
                    "source_file": "/in/x.jsonl",
                    "line_number": 4,
                    "reason": "invalid_json",
                    "detail": "Expecting value",
                }
            }
        ),
        json.dumps({"ingest_rejected": "nonsense"}),
        json.dumps(
            {
                "ingest_unreadable": {
                    "source_file": "/in/y.jsonl.gz",
                    "kind": "corrupt_compression",
                    "detail": "cut",
                    "lines_read": 3,
                }
            }
        ),
        # tool calls, multimodal, audio: decided by Python
        json.dumps(_tool_conv("tool-ok")),
        json.dumps(_tool_conv("tool-deep", args="[" * 70 + "]" * 70)),
        json.dumps(_tool_conv("tool-sur", args='{"q": "\\ud800"}')),
        json.dumps(_tool_conv("tool-esc-bracket", args="\u005b" * 3 + "\u005d" * 3)),
        json.dumps(
            _conv(
                "mm",
                user=None,
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "see"},
                            {"type": "image_url", "image_url": {"url": "x"}},
                        ],
                    },
                    {"role": "assistant", "content": "a cat"},
                ],
            )
        ),
        json.dumps(
            _conv(
                "audio",
                messages=[
                    {"role": "user", "content": "hi", "audio": {"id": "a1"}},
                    {"role": "assistant", "content": "ok"},
                ],
            )
        ),
        json.dumps(
            _conv(
                "parts-ok",
                messages=[
                    {"role": "user", "content": [{"type": "text", "text": "see"}]},
                    {"role": "assistant", "content": [{"type": "text", "text": "fine"}]},
                ],
            )
        ),
        # depth: 64 brackets is fine, beyond is Python's to decide
        json.dumps(_conv("deep64", extra=[[[[[[[[[[]]]]]]]]]])),
        json.dumps(_conv("deep70", extra=json.loads("[" * 70 + "]" * 70))),
        # same id as a plain line, later: a duplicate
        json.dumps(_conv("p3")),
        json.dumps(_conv("p4", opted_out=True)),
    ]
    return lines + raw


def _write_day(root: Path, *, extra: dict[str, bytes] | None = None) -> Path:
    day = root / DAY
    day.mkdir(parents=True, exist_ok=True)
    body = "\n".join(tricky_lines())
    # BOM on line 1, blank and whitespace-only lines, CRLF, invalid UTF-8, no final newline.
    data = (
        b"\xef\xbb\xbf"
        + body.encode("utf-8")
        + b"\n\n  \t\x0c\n"
        + json.dumps(_conv("crlf")).encode()
        + b"\r\n"
        + b'{"conversation_id": "bad-utf8", "x": "\xff\xfe"}\n'
        + json.dumps(_conv("last-no-newline")).encode()
    )
    (day / "a.jsonl").write_bytes(data)
    (day / "b.jsonl.gz").write_bytes(
        gzip.compress(
            (
                "\n".join(json.dumps(_conv(f"gz{i}")) for i in range(50))
                + "\n"
                + json.dumps(_conv("p7"))
                + "\n"
            ).encode()
        )
    )
    (day / "c.jsonl.zst").write_bytes(
        zstandard.ZstdCompressor().compress(
            ("\n".join(json.dumps(_conv(f"zs{i}")) for i in range(50)) + "\n").encode()
        )
    )
    for name, blob in (extra or {}).items():
        (day / name).write_bytes(blob)
    return root


def _selections(root: Path, **kw):
    args = {
        "n": 40,
        "fraction": None,
        "seed": 7,
        "eligibility": EligibilityConfig(),
        "max_line_bytes": 1 << 20,
        "stratify_by": None,
    }
    args.update(kw)
    a = select_python(root, DAY, **args)
    b = fast_sample.select_duckdb(root, DAY, **args)
    if args["n"] is not None and args["stratify_by"] is not None:
        # The Python reader keeps each stratum's bottom-n and allocates later; DuckDB
        # allocates first. What run_sampling keeps is the allocated prefix of either.
        alloc = pipeline.allocate({str(h): size for h, size in a.sizes.items()}, args["n"])
        a.samples = {h: items[: alloc[str(h)]] for h, items in a.samples.items()}
    return a, b


def _assert_same(a, b) -> None:
    assert b.records_in == a.records_in
    assert b.quarantine_rows == a.quarantine_rows
    assert b.quarantined == a.quarantined
    assert b.ineligible == a.ineligible
    assert b.unreadable == a.unreadable
    assert b.sizes == a.sizes
    assert b.samples == a.samples


CONFIGS = {
    "n": {},
    "n-larger-than-day": {"n": 10_000},
    "fraction": {"n": None, "fraction": 0.3},
    "fraction-all": {"n": None, "fraction": 1.0},
    "by-source": {"stratify_by": "source"},
    "by-model": {"stratify_by": "model", "n": 15},
    "by-metadata": {"stratify_by": "metadata.tier", "n": 25},
    "excludes": {
        "eligibility": EligibilityConfig(
            exclude_sources=("internal_test", "7"),
            exclude_models=("m2",),
            exclude_metadata={"tier": ("pro", "true", "3")},
        )
    },
    "small-lines": {"max_line_bytes": 200},
}


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_duckdb_selects_what_python_selects_on_tricky_lines(tmp_path, config):
    root = _write_day(tmp_path)
    a, b = _selections(root, **CONFIGS[config])
    _assert_same(a, b)
    assert a.records_in > 350 and sum(len(v) for v in a.samples.values()) > 0
    if config != "small-lines":  # there most lines are over-long, named by Python
        # Most lines are decided in SQL; the odd ones went to Python.
        assert 0 < b.engine["python_lines"] < a.records_in / 2


def test_duckdb_selects_what_python_selects_on_the_poison_corpus(tmp_path):
    write_poison(tmp_path / DAY)
    a, b = _selections(tmp_path, n=30)
    _assert_same(a, b)
    assert a.unreadable and a.quarantined
    # The cut gzip, the gzip that is not gzip and the corrupt zstd broke under the reader:
    # each was read again, whole, by the Python reader.
    assert b.engine["python_files"] == 3


def test_lines_across_chunk_boundaries_and_over_long_lines(tmp_path, monkeypatch):
    monkeypatch.setattr(fast_sample, "_CHUNK", 257)
    root = _write_day(
        tmp_path,
        extra={
            "d.jsonl": (
                json.dumps(_conv("long", reply="x" * 5000))
                + "\n"
                + json.dumps(_conv("after-long"))
                + "\n"
                + json.dumps(_conv("long2", reply="y" * 600))
            ).encode()
        },
    )
    for max_line_bytes in (300, 700, 1 << 20):
        a, b = _selections(root, max_line_bytes=max_line_bytes, n=1000)
        _assert_same(a, b)


def test_run_sampling_gives_identical_rows_on_both_engines(tmp_path):
    root = _write_day(tmp_path)
    write_poison(root / DAY)
    kw = {"seed": 11, "salt": SALT, "stratify_by": "source", "n": 60}
    py = run_sampling(root, DAY, engine="python", **kw)
    db = run_sampling(root, DAY, engine="duckdb", **kw)
    for name in (
        "sampled_rows",
        "prefix_rows",
        "quarantine_rows",
        "funnel_rows",
        "counts",
        "status_row",
    ):
        assert getattr(db, name) == getattr(py, name), name
    c = db.counts
    assert c["records_in"] == c["quarantined"] + sum(c["ineligible"].values()) + c["eligible"]
    assert db.engine["engine"] == "duckdb" and py.engine["engine"] == "python"


def test_the_engine_comes_from_the_environment(tmp_path, monkeypatch):
    root = _write_day(tmp_path)
    monkeypatch.setenv(pipeline.ENGINE_ENV, "python")
    assert run_sampling(root, DAY, seed=1, salt=SALT, n=5).engine["engine"] == "python"
    monkeypatch.setenv(pipeline.ENGINE_ENV, "spark")
    with pytest.raises(ValueError, match="sampling engine must be one of duckdb, python"):
        run_sampling(root, DAY, seed=1, salt=SALT, n=5)


def test_the_sql_key_is_the_python_key_bit_for_bit():
    rng = random.Random(3)
    alphabet = "abcXYZ019-_ éüß中文😀\u3000"
    ids = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 30))) for _ in range(2000)]
    conn = duckdb.connect()
    for seed in (0, 7, 20261126, -5):
        got = conn.execute(
            "SELECT substr(sha256(? || id), 1, 16) FROM unnest(?::VARCHAR[]) t(id)",
            [f"{seed}|", ids],
        ).fetchall()
        assert [g for (g,) in got] == [f"{sample_key(seed, i):016x}" for i in ids]
    # Hex text orders as the integers do (fixed width, lowercase).
    keys = [sample_key(1, i) for i in ids]
    assert sorted(f"{k:016x}" for k in keys) == [f"{k:016x}" for k in sorted(keys)]
    assert hashlib.sha256(b"1|a").hexdigest()[:16] == f"{sample_key(1, 'a'):016x}"


@pytest.mark.slow  # starts two Python processes that import depsim
def test_parallel_deidentification_equals_serial(tmp_path):
    day = tmp_path / DAY
    day.mkdir()
    rows = [
        json.dumps(
            record(
                conversation_id=f"w{i}",
                messages=[
                    {
                        "role": "user",
                        "content": f"I am Dana Whitfield, call me at (415) 555-01{i % 90:02d}.",
                    },
                    {"role": "assistant", "content": "Thanks Dana, noted."},
                ],
            )
        )
        for i in range(120)
    ]
    (day / "a.jsonl").write_text("\n".join(rows + [good(1)]) + "\n")
    jobs = [(r, None) for r in iter_log(tmp_path, DAY)]
    serial = pipeline.deidentify_all(jobs, DAY, SALT, 3, workers=1)
    monkey_chunk = pipeline._CHUNK_JOBS
    try:
        pipeline._CHUNK_JOBS = 40  # three chunks over two processes
        parallel = pipeline.deidentify_all(jobs, DAY, SALT, 3, workers=2)
    finally:
        pipeline._CHUNK_JOBS = monkey_chunk
    # Equal but for the residue check's timings (the last field).
    assert [done[:4] for done in parallel] == [done[:4] for done in serial]
    assert any(counts for _, counts, _, _, _ in serial)  # names and phones were replaced
