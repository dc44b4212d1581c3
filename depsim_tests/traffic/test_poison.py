"""Poison never stops a day: each item of issue 11's list through `depsim ingest` and
`depsim sample`, as a user runs them (real subprocesses, real Dagster, real DuckDB).

One day folder holds all the poison next to 40 good conversations; `depsim sample --json` runs
once on it and each test reads its own item from that one run. `depsim ingest` runs once on
the poison files it can be given, plus one run per item that is a usage error. Every run:
no traceback, the file named with its reason, counts that reconcile.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import resource
import signal
import string
import subprocess
import sys
from pathlib import Path

import pytest
import zstandard

from depsim_assets.traffic import logs
from depsim_assets.traffic.logs import LogRecord, Unreadable, iter_log, read_log_file

DAY = "2026-11-20"
GOOD = 40


def good(i: int, prefix: str = "g") -> str:
    return json.dumps(
        {
            "conversation_id": f"{prefix}{i}",
            "created_at": f"{DAY}T10:00:00Z",
            "messages": [
                {"role": "user", "content": f"How do I reverse a list in Python? ({i})"},
                {"role": "assistant", "content": "Use reversed(xs) or xs[::-1]."},
            ],
        }
    )


def record(**fields) -> dict:
    base = json.loads(good(0))
    base.update(fields)
    return base


# Record-level poison, written as raw JSON text: each line is what a hostile log holds.
SURROGATE_CONTENT = (
    '{"conversation_id": "sur-content", "messages": [{"role": "user", "content": "a\\ud800b"},'
    ' {"role": "assistant", "content": "ok"}]}'
)
SURROGATE_ID = (
    '{"conversation_id": "\\ud800", "messages": [{"role": "user", "content": "hi"},'
    ' {"role": "assistant", "content": "ok"}]}'
)
DEEP_NAME = (
    '{"conversation_id": "deep-name", "messages": [{"role": "user", "name": '
    + "[" * 900
    + "]" * 900
    + ', "content": "hi"}, {"role": "assistant", "content": "ok"}]}'
)
DEEP_METADATA = (
    '{"conversation_id": "deep-meta", "metadata": '
    + '{"a": ' * 300
    + "1"
    + "}" * 300
    + ', "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}'
)
RECORD_POISON = {
    "surrogate_in_content": (SURROGATE_CONTENT, "invalid_encoding"),
    "surrogate_in_id": (SURROGATE_ID, "invalid_encoding"),
    "name_nested_900_deep": (DEEP_NAME, "too_deep"),
    "metadata_nested_300_deep": (DEEP_METADATA, "too_deep"),
}

# File-level poison: name in the day folder -> the kind it is counted as (None: read).
FILE_POISON = {
    "truncated_gz": ("cut.jsonl.gz", "corrupt_compression"),
    "non_gzip_gz": ("plain.jsonl.gz", "corrupt_compression"),
    "corrupt_zst": ("broken.jsonl.zst", "corrupt_compression"),
    "directory": ("subdir", "directory"),
    "broken_symlink": ("dangling.jsonl", "broken_symlink"),
    "symlink_to_etc_passwd": ("passwd.jsonl", "outside_log_root"),
    "upper_case_extension": ("UPPER.JSONL", None),
    "json_extension": ("array.json", "unsupported_name"),
    "bz2_extension": ("packed.jsonl.bz2", "unsupported_name"),
}
TRUNCATED_KEPT = 20  # complete lines of cut.jsonl.gz before the cut
ZST_LINES = 3000  # lines of broken.jsonl.zst, corrupted three quarters in


def write_poison(folder: Path) -> None:
    """Every poison item of the issue, in one folder (a day folder or ingest's inputs)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [good(i) for i in range(GOOD)] + [text for text, _ in RECORD_POISON.values()]
    (folder / "records.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    # A gzip stream cut mid-way: the first 20 records decompress, then it ends early.
    whole = gzip.compress(("\n".join(good(i, "cut") for i in range(200)) + "\n").encode())
    # The cut point: the shortest prefix that yields TRUNCATED_KEPT whole lines.
    cut = next(n for n in range(64, len(whole)) if _lines_of_prefix(whole[:n]) >= TRUNCATED_KEPT)
    (folder / "cut.jsonl.gz").write_bytes(whole[:cut])
    (folder / "plain.jsonl.gz").write_text(good(0, "plain") + "\n")
    # Large enough for several zstd blocks (128 KiB each): a block decodes whole or not at all,
    # so the blocks before the damaged one are what is read before the corruption.
    packed = zstandard.ZstdCompressor().compress(
        ("\n".join(good(i, "zst") for i in range(ZST_LINES)) + "\n").encode()
    )
    middle = len(packed) * 3 // 4
    broken = packed[:middle] + b"\x00garbage" * 8 + packed[middle:]
    (folder / "broken.jsonl.zst").write_bytes(broken)
    (folder / "subdir").mkdir(exist_ok=True)
    (folder / "subdir" / "inside.jsonl").write_text(good(0, "sub") + "\n")
    os.symlink(folder / "no-such-file.jsonl", folder / "dangling.jsonl")
    os.symlink("/etc/passwd", folder / "passwd.jsonl")
    (folder / "UPPER.JSONL").write_text(good(0, "upper") + "\n" + good(1, "upper") + "\n")
    (folder / "array.json").write_text("[" + good(0, "array") + "]")
    (folder / "packed.jsonl.bz2").write_bytes(b"BZh91AY&SY not really")


def _lines_of_prefix(data: bytes) -> int:
    out = b""
    stream = gzip.GzipFile(fileobj=io.BytesIO(data))
    try:
        while chunk := stream.read(1):
            out += chunk
    except EOFError:
        pass
    return out.count(b"\n")


def run_cli(*args: str, env: dict[str, str], preexec=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "depsim_assets.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=preexec,
    )


def cli_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(DEPSIM_HOME=str(home), DAGSTER_HOME=str(home / "dagster"), DEPSIM_MIN_SAMPLE="1")
    env.pop("DEPSIM_WAREHOUSE", None)
    return env


def assert_clean(proc: subprocess.CompletedProcess) -> None:
    both = proc.stdout + proc.stderr
    assert "Traceback" not in both and "Stack Trace" not in both, both[-2000:]


# --- one `depsim sample` over a day folder holding all of it ------------------------------------


@pytest.fixture(scope="module")
def sampled_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("poison") / "home"
    write_poison(home / "logs" / "production" / DAY)
    proc = run_cli("sample", "--date", DAY, "--json", env=cli_env(home))
    assert_clean(proc)
    assert proc.returncode == 0, proc.stderr
    return home, json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def sampled(sampled_run):
    return sampled_run[1]


@pytest.fixture
def sampled_home(sampled_run):
    return sampled_run[0]


@pytest.mark.slow  # the depsim CLI in a process of its own, or a Dagster run
def test_sample_counts_reconcile_with_every_poison_item_in_the_day(sampled):
    c = sampled
    assert c["records_in"] == c["quarantined"] + sum(c["ineligible"].values()) + c["eligible"]
    # records.jsonl (40 good + 4 poison) + 20 read before the gzip cut + the zstd lines before
    # its corruption + UPPER.JSONL's 2: the good ones all eligible, the poison all quarantined.
    assert c["quarantine_reasons"] == {"invalid_encoding": 2, "too_deep": 2}
    unreadable = [e for e in c["unreadable"] if "broken.jsonl.zst" in e["file"]]
    zst_kept = unreadable[0]["lines_read"]
    assert 0 < zst_kept < ZST_LINES  # the lines before the corruption were read, and kept
    assert c["eligible"] == GOOD + TRUNCATED_KEPT + zst_kept + 2
    # Eight entries named (UPPER.JSONL is read), none of them counted as a record.
    assert c["unreadable_files"] == len(c["unreadable"]) == 8


def quarantine_rows(home: Path) -> list[tuple[str, int, str, str]]:
    import duckdb

    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
        return conn.execute(
            "SELECT source_file, line_number, reason, detail FROM sampling_quarantine"
            " WHERE traffic_date = ?",
            [DAY],
        ).fetchall()


def poison_line(item: str) -> int:
    """The line of records.jsonl holding ``item``: after the good ones, in RECORD_POISON order."""
    return GOOD + 1 + list(RECORD_POISON).index(item)


@pytest.mark.parametrize("item", sorted(RECORD_POISON))
@pytest.mark.slow  # the depsim CLI in a process of its own, or a Dagster run
def test_sample_quarantines_each_poison_record(sampled_home, item):
    _, reason = RECORD_POISON[item]
    rows = {(f, n): (r, d) for f, n, r, d in quarantine_rows(sampled_home)}
    got_reason, detail = rows[(f"{DAY}/records.jsonl", poison_line(item))]
    assert got_reason == reason
    assert "surrogate" in detail if reason == "invalid_encoding" else "deeper than 64" in detail


@pytest.mark.parametrize("item", sorted(FILE_POISON))
@pytest.mark.slow  # the depsim CLI in a process of its own, or a Dagster run
def test_sample_names_each_poison_file(sampled, item):
    name, kind = FILE_POISON[item]
    named = {Path(e["file"]).name: e for e in sampled["unreadable"]}
    if kind is None:
        assert name not in named  # read: its records are in the counts
        return
    entry = named[name]
    assert entry["file"] == f"{DAY}/{name}"
    assert entry["detail"].startswith(f"{kind}: ")


@pytest.mark.slow  # the depsim CLI in a process of its own, or a Dagster run
def test_sample_keeps_the_lines_read_before_a_gzip_cut(sampled):
    [entry] = [e for e in sampled["unreadable"] if e["file"].endswith("cut.jsonl.gz")]
    assert entry["lines_read"] == TRUNCATED_KEPT
    assert "truncated" in entry["detail"] and f"after line {TRUNCATED_KEPT}" in entry["detail"]


# --- `depsim ingest` of the same poison -------------------------------------------------------


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    base = tmp_path_factory.mktemp("poison-ingest")
    src = base / "src"
    write_poison(src)
    home = base / "home"
    inputs = [
        src / n
        for n in (
            "records.jsonl",
            "cut.jsonl.gz",
            "plain.jsonl.gz",
            "broken.jsonl.zst",
            "passwd.jsonl",
            "UPPER.JSONL",
            "array.json",
            "packed.jsonl.bz2",
        )
    ]
    proc = run_cli("ingest", *map(str, inputs), "--date", DAY, "--json", env=cli_env(home))
    assert_clean(proc)
    return proc, json.loads(proc.stdout), src, home


@pytest.mark.slow  # the depsim CLI in a process of its own, or a Dagster run
def test_ingest_writes_the_readable_and_names_the_rest(ingested):
    proc, out, src, _ = ingested
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("depsim: error: ") and "the other files were ingested" in line
    assert out["records_in"] == out["written"] + out["quarantined"]
    assert out["quarantine_reasons"] == {"invalid_encoding": 2, "too_deep": 2}
    kinds = {Path(e["file"]).name: e["kind"] for e in out["unreadable"]}
    assert kinds == {
        "cut.jsonl.gz": "corrupt_compression",
        "plain.jsonl.gz": "corrupt_compression",
        "broken.jsonl.zst": "corrupt_compression",
        # Ingest reads what it is given (a link is the user's choice): /etc/passwd has no
        # JSON line, so it is named and none of its text is kept.
        "passwd.jsonl": "no_decodable_record",
        "packed.jsonl.bz2": "unsupported_name",
    }
    # UPPER.JSONL and array.json are inputs ingest reads (JSON Lines and a JSON array).
    assert out["written"] == GOOD + TRUNCATED_KEPT + 2 + 1 + next(
        e["lines_read"] for e in out["unreadable"] if e["kind"] == "corrupt_compression"
        and e["file"].endswith(".zst")
    )


@pytest.fixture(scope="module")
def ingested_sample(ingested):
    """`depsim sample --json` of the day the poison was ingested into."""
    home = ingested[3]
    proc = run_cli("sample", "--date", DAY, "--json", env=cli_env(home))
    assert_clean(proc)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # the depsim CLI in a process of its own, or a Dagster run
def test_ingested_day_reconciles_in_depsim_sample_and_names_unreadable_inputs(
    ingested, ingested_sample
):
    _, out, src, home = ingested
    log = home / "logs" / "production"
    on_disk = "".join(p.read_text() for p in log.rglob("*.jsonl"))
    assert "root:" not in on_disk  # nothing of /etc/passwd was kept
    c = ingested_sample
    assert c["records_in"] == out["records_in"]
    assert c["records_in"] == c["quarantined"] + sum(c["ineligible"].values()) + c["eligible"]
    named = sorted(e["file"] for e in c["unreadable"])
    assert named == sorted(e["file"] for e in out["unreadable"])


@pytest.mark.parametrize("item", sorted(RECORD_POISON))
@pytest.mark.slow  # the depsim CLI in a process of its own, or a Dagster run
def test_ingest_quarantines_each_poison_record_under_its_own_file_and_line(
    ingested, ingested_sample, item
):
    _, _, src, home = ingested
    # The ingest left a stub for the line; the day's sample quarantines it under the input's
    # own name and line.
    rows = {(f, n): r for f, n, r, _ in quarantine_rows(home)}
    assert rows[(str(src / "records.jsonl"), poison_line(item))] == RECORD_POISON[item][1]


@pytest.mark.parametrize(
    ("item", "message"),
    [("directory", "a directory"), ("broken_symlink", "a symbolic link to nothing")],
)
@pytest.mark.slow  # the depsim CLI in a process of its own, or a Dagster run
def test_ingest_refuses_a_path_that_is_no_file_naming_it(tmp_path, item, message):
    src = tmp_path / "src"
    write_poison(src)
    name = FILE_POISON[item][0]
    proc = run_cli(
        "ingest", str(src / "records.jsonl"), str(src / name), "--date", DAY,
        env=cli_env(tmp_path / "home"),
    )
    assert_clean(proc)
    assert proc.returncode == 2 and proc.stdout == ""
    [line] = proc.stderr.strip().splitlines()
    assert line == f"depsim: error: {src / name}: {message}" + (
        "; give the files inside it" if item == "directory" else ""
    )
    assert not (tmp_path / "home" / "logs").exists()  # nothing written


# --- a file deleted (or cut) while the day is read ------------------------------------------


def _delete_on_open(monkeypatch, victim: str) -> None:
    real_open = logs.open_log

    def open_after_delete(path, compression):
        if Path(path).name == victim:
            Path(path).unlink()
        return real_open(path, compression)

    monkeypatch.setattr(logs, "open_log", open_after_delete)


@pytest.mark.slow  # the depsim CLI in a process of its own, or a Dagster run
def test_sample_names_a_file_deleted_between_listing_and_reading(
    depsim_home, monkeypatch, capsys
):
    from depsim_assets import cli

    monkeypatch.setenv("DEPSIM_MIN_SAMPLE", "1")
    day = depsim_home / "logs" / "production" / DAY
    day.mkdir(parents=True)
    (day / "a.jsonl").write_text("\n".join(good(i) for i in range(5)) + "\n")
    (day / "b.jsonl").write_text(good(0, "b") + "\n")
    _delete_on_open(monkeypatch, "b.jsonl")
    assert cli.main(["sample", "--date", DAY, "--json"]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    c = json.loads(captured.out.strip().splitlines()[-1])
    assert c["unreadable"] == [
        {"file": f"{DAY}/b.jsonl", "detail": "vanished: removed before it could be read",
         "lines_read": 0}
    ]
    assert c["records_in"] == c["eligible"] == 5


def test_ingest_names_a_file_deleted_before_it_is_read(depsim_home, tmp_path, monkeypatch, capsys):
    from depsim_assets import cli

    a = tmp_path / "a.jsonl"
    a.write_text(good(0) + "\n")
    b = tmp_path / "b.jsonl"
    b.write_text(good(1) + "\n")
    _delete_on_open(monkeypatch, "b.jsonl")
    assert cli.main(["ingest", str(a), str(b), "--date", DAY, "--json"]) == 2
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert [(e["file"], e["kind"]) for e in out["unreadable"]] == [(str(b), "vanished")]
    assert out["records_in"] == out["written"] == 1
    assert str(b) in captured.err and "Traceback" not in captured.err


def test_a_file_cut_short_while_read_is_named_and_its_read_lines_kept(tmp_path):
    day = tmp_path / DAY
    day.mkdir()
    path = day / "live.jsonl"
    path.write_text("\n".join(good(i) for i in range(2000)) + "\n")
    [entry] = logs.day_entries(tmp_path, DAY)
    reader = read_log_file(entry, 1 << 20)
    first = next(reader)
    os.truncate(path, 0)  # another process empties the file under the reader
    rest = list(reader)
    assert isinstance(first, LogRecord)
    assert isinstance(rest[-1], Unreadable) and rest[-1].kind == "changed_while_read"
    # What was buffered before the cut is read (a line cut in two is quarantined as a record);
    # the file is named with how far it got.
    lines = 1 + len(rest) - 1
    assert 0 < lines < 2000 and rest[-1].line_number == lines
    assert all(isinstance(r, LogRecord) for r in rest[:-2])


# --- focused unit tests -----------------------------------------------------------------------


def test_depth_is_checked_without_recursion_and_surrogates_anywhere():
    deep = "[" * 100_000 + "]" * 100_000  # far past any recursion limit
    with pytest.raises(logs.RecordError) as err:
        logs.loads(deep)
    assert err.value.reason == "too_deep"
    assert logs.loads("[" * 64 + "]" * 64) is not None  # the limit itself is fine
    with pytest.raises(logs.RecordError) as err:
        logs.loads("[" * 65 + "]" * 65)
    assert err.value.detail == "nested deeper than 64 levels"
    for text in ('{"\\udc00": 1}', '{"a": ["x", {"b": "\\ud800"}]}', '"\\ud800"'):
        with pytest.raises(logs.RecordError) as err:
            logs.loads(text)
        assert err.value.reason == "invalid_encoding" and "surrogate" in err.value.detail
    assert logs.loads('"\\ud83d\\ude00"') == "\U0001f600"  # a proper pair is an emoji


def test_poison_inside_tool_json_is_refused_before_sampling(tmp_path):
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}}
    cases = {
        "too_deep": "[" * 900 + "]" * 900,
        "invalid_encoding": '{"q": "\\ud800"}',
    }
    day = tmp_path / DAY
    day.mkdir()
    lines = []
    for args in cases.values():
        rec = record(
            messages=[
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": None,
                 "tool_calls": [dict(call, function=dict(call["function"], arguments=args))]},
                {"role": "tool", "tool_call_id": "c1", "content": args},
                {"role": "assistant", "content": "done"},
            ]
        )
        lines.append(json.dumps(rec))
    (day / "tools.jsonl").write_text("\n".join(lines) + "\n")
    assert [r.reason for r in iter_log(tmp_path, DAY)] == list(cases)


def test_zstd_and_case_insensitive_names_are_read(tmp_path):
    day = tmp_path / DAY
    day.mkdir()
    packed = zstandard.ZstdCompressor().compress((good(1, "z") + "\n").encode())
    (day / "Part.JSONL.ZST").write_bytes(packed * 2)  # two frames, read across
    (day / "cut.jsonl.zst").write_bytes(packed[:-3])
    out = list(iter_log(tmp_path, DAY))
    assert [o.kind for o in out if isinstance(o, Unreadable)] == ["corrupt_compression"]
    assert [o.conversation_id for o in out if isinstance(o, LogRecord)] == ["z1", "z1"]


# --- the machine's failures: a full disk, a read-only home --------------------------------------


def _fsize_limit(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.slow  # the depsim CLI in a process of its own, or a Dagster run
def test_sample_on_a_full_disk_says_so_in_one_line(tmp_path):
    home = tmp_path / "home"
    day = home / "logs" / "production" / DAY
    day.mkdir(parents=True)
    # Lower-case pseudo-words: text DuckDB cannot compress away (a repeated reply it would).
    rng = random.Random(7)
    lines = []
    for i in range(300):
        rec = json.loads(good(i))
        letters = (rng.choices(string.ascii_lowercase, k=rng.randint(3, 8)) for _ in range(1200))
        rec["messages"][1]["content"] = " ".join("".join(w) for w in letters)
        lines.append(json.dumps(rec))
    (day / "big.jsonl").write_text("\n".join(lines) + "\n")
    env = cli_env(home)
    # A first small run creates Dagster's storage and the warehouse; then no file may grow
    # past the largest of them + 512 KiB. Dagster's few events fit; 2 MB of conversations do not.
    assert run_cli("sample", "--date", DAY, "--size", "1", env=env).returncode == 0
    largest = max(p.stat().st_size for p in home.rglob("*") if p.is_file() and p.parent != day)
    limit = _fsize_limit(largest + (512 << 10))
    proc = run_cli("sample", "--date", DAY, "--size", "300", env=env, preexec=limit)
    assert_clean(proc)
    assert proc.returncode == 1, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("depsim: error: the warehouse file hit the file size limit (File too")
    assert str(home) in line and "nothing of sampled_conversations, " in line
    assert line.endswith(f" for {DAY} was written")
    # Nothing of it was written indeed: the first run's one row is still the day's sample.
    import duckdb

    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
        (rows,) = conn.execute(
            "SELECT count(*) FROM sampled_conversations WHERE traffic_date = ?", [DAY]
        ).fetchone()
    assert rows == 1


def test_the_real_disk_full_text_of_duckdb_is_translated():
    import duckdb

    from depsim_assets.warehouse import translate_write_error

    # The exact text DuckDB 1.x/2.x raised on a 1 MiB tmpfs when its WAL could not grow.
    exc = duckdb.TransactionException(
        'TransactionContext Error: Failed to commit: Could not write file '
        '"/srv/depsim/warehouse.duckdb.wal": No space left on device'
    )
    assert str(translate_write_error(exc, "/srv/depsim/warehouse.duckdb", DAY)) == (
        "the warehouse disk is full (No space left on device) writing "
        f"/srv/depsim/warehouse.duckdb.wal: nothing of {DAY} was written"
    )


@pytest.mark.parametrize(
    ("dagster_folder", "expected"),
    [
        # Tests run as root, where chmod stops nothing: sysfs refuses new files even to root
        # (EACCES, for real), and a file where a folder is expected fails as it would anywhere.
        ("link-to-sysfs", "is read-only (Permission denied: "),
        ("a-file", "is not a folder depsim can use ("),
    ],
)
@pytest.mark.slow  # the depsim CLI in a process of its own, or a Dagster run
def test_sample_with_an_unwritable_home_says_so_in_one_line(tmp_path, dagster_folder, expected):
    home = tmp_path / "home"
    day = home / "logs" / "production" / DAY
    day.mkdir(parents=True)
    (day / "a.jsonl").write_text(good(0) + "\n")
    if dagster_folder == "a-file":
        (home / "dagster").write_text("not a folder")
    else:
        os.symlink("/sys/kernel", home / "dagster")
    proc = run_cli("sample", "--date", DAY, env=cli_env(home))
    assert_clean(proc)
    assert proc.returncode == 1
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"depsim: error: the depsim home {home} {expected}"), line


@pytest.mark.slow  # the depsim CLI in a process of its own, or a Dagster run
def test_ingest_on_a_full_disk_writes_nothing_and_says_so(tmp_path):
    src = tmp_path / "big.jsonl"
    src.write_text("\n".join(good(i) for i in range(8000)) + "\n")  # ~2.4 MB out
    home = tmp_path / "home"
    proc = run_cli(
        "ingest", str(src), "--date", DAY, env=cli_env(home), preexec=_fsize_limit(1 << 20)
    )
    assert_clean(proc)
    assert proc.returncode == 1, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    log = home / "logs" / "production"
    assert line == (
        f"depsim: error: a file hit the file size limit (File too large) writing {log}: "
        "nothing was ingested"
    )
    assert not [p for p in log.rglob("*") if p.is_file()]  # temporary files removed too


@pytest.mark.slow  # the depsim CLI in a process of its own, or a Dagster run
def test_ingest_into_a_read_only_home_says_so(tmp_path):
    src = tmp_path / "a.jsonl"
    src.write_text(good(0) + "\n")
    home = tmp_path / "home"
    home.mkdir()
    os.symlink("/sys/kernel", home / "logs")  # sysfs: no new folders, even for root
    proc = run_cli("ingest", str(src), "--date", DAY, env=cli_env(home))
    assert_clean(proc)
    assert proc.returncode == 1, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"depsim: error: the depsim home {home} is read-only ("), line
