"""The warehouse on a real PostgreSQL 15 server: the same tables, writes and numbers as DuckDB.

Each test gets a fresh database on one throwaway server (depsim_tests.services). What is
checked: every table's DDL; ``read_partition`` giving back the frame DuckDB gives back (values
and dtypes); ``replace_partitions`` as one transaction; two processes writing different
partitions at once (one holds its transaction open while the other commits) and two writing
the same partition taking turns; two processes storing the same cache keys at once; and the
estimates' SQL (rates, paired counts, McNemar discordant pairs, the comparison and its
p-values, the guard's partition summary) giving the same numbers on both backends.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import multiprocessing as mp
import re
import time
import tokenize
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import duckdb
import numpy as np
import pandas as pd
import psycopg
import pytest

from depsim_assets import warehouse as wh
from depsim_assets import warehouse_pg
from depsim_assets.estimates.checks import coverage_counts
from depsim_assets.estimates.compute import (
    comparison_by_day,
    comparison_from_relation,
    grade_versions,
    paired_sums,
    rate_counts,
)
from depsim_assets.estimates.guard import partition_summary
from depsim_assets.models import cache
from depsim_assets.warehouse_pg import PgConnection
from depsim_tests.services import start_postgres

DAYS = ("2026-11-01", "2026-11-02", "2026-11-03")
CATS = [(f"cat{i}", "misalignment" if i % 2 else "disallowed_content") for i in range(6)]


# --------------------------------------------------------------------------- pure functions
def test_placeholders_translate_outside_quotes_only():
    sql = "SELECT '?', \"a?\", x FROM t WHERE a = ? AND b LIKE '50%' AND c = ?"
    assert warehouse_pg.translate(sql) == (
        "SELECT '?', \"a?\", x FROM t WHERE a = %s AND b LIKE '50%%' AND c = %s"
    )
    assert warehouse_pg.translate("SELECT 'it''s ?', ?") == "SELECT 'it''s ?', %s"


def test_url_password_is_never_shown(monkeypatch):
    url = "postgresql://ana:s3cret@db.internal:5433/depsim"
    assert warehouse_pg.display_url(url) == "postgresql://ana@db.internal:5433/depsim"
    monkeypatch.setenv(wh.URL_ENV, url)
    assert "s3cret" not in wh.location()
    monkeypatch.setenv(wh.URL_ENV, "mysql://ana:s3cret@h/db")
    with pytest.raises(ValueError, match="postgresql://") as err:
        wh.warehouse_url()
    assert "s3cret" not in str(err.value)
    monkeypatch.delenv(wh.URL_ENV)
    assert wh.warehouse_url() is None


# DuckDB spellings Postgres does not read (docs/warehouse.md, "SQL written once"); keywords in
# capitals as the code writes SQL, so English prose in docstrings ("by name") is not matched.
DUCKDB_ONLY = re.compile(
    r"GROUP BY ALL|\blist_\w+\(|\bany_value\(|INSERT OR REPLACE|\bBY NAME\b|\bQUALIFY\b"
    r"|unnest\(\?\)|\bflatten\(|\blist\(DISTINCT|\bstruct_pack\("
)
# The seam itself (each backend's own statements) and the log reader, which queries its own
# in-memory DuckDB, never the warehouse.
OWN_DUCKDB = {"warehouse.py", "warehouse_pg.py", "traffic/fast_sample.py"}


def test_no_warehouse_sql_is_spelled_for_duckdb_only():
    root = Path(wh.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.relative_to(root).as_posix() in OWN_DUCKDB:
            continue
        for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
            if tok.type == tokenize.STRING and (hit := DUCKDB_ONLY.search(tok.string)):
                found.append(f"{path.relative_to(root)}:{tok.start[0]} {hit.group(0)}")
    assert not found, f"DuckDB-only SQL (write it as both read it): {found}"


# ------------------------------------------------------------------------------- the server
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pg = start_postgres(tmp_path_factory.mktemp("pg"))
    yield pg
    pg.stop()


@pytest.fixture
def url(server) -> str:
    """A fresh database on the module's server."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(server.url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", "", ""))


@pytest.fixture
def pg(url):
    conn = PgConnection(url)
    yield conn
    conn.close()


# ------------------------------------------------------------------------------------ tables
@pytest.mark.slow
def test_every_table_is_created_with_its_declared_columns_and_keys(pg):
    wh.ensure_tables(pg)
    found = pg.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
    ).fetchall()
    by_table: dict[str, list[tuple[str, str]]] = {}
    for table, column, kind in found:
        by_table.setdefault(table, []).append((column, kind))
    assert set(by_table) == {t.name for t in wh.ALL_TABLES}
    for table in wh.ALL_TABLES:
        assert by_table[table.name] == [
            (c.name, warehouse_pg.PG_TYPES[c.type].replace("timestamp", "timestamp without "
                                                            "time zone"))
            for c in table.columns
        ], table.name
    keys = pg.execute(
        "SELECT tc.table_name, kcu.column_name FROM information_schema.table_constraints tc"
        " JOIN information_schema.key_column_usage kcu USING (constraint_name, table_schema)"
        " WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = current_schema()"
    ).fetchall()
    assert sorted(keys) == sorted(
        (t.name, k) for t in wh.ALL_TABLES for k in t.primary_key
    )
    # A warehouse made by an older depsim gets the columns added since (NULL in old rows).
    pg.execute("ALTER TABLE judge_grades DROP COLUMN judge_layout")
    fresh = PgConnection(pg.url)
    try:
        wh.ensure_tables(fresh)
        cols = fresh.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ?",
            ["judge_grades"],
        ).fetchall()
    finally:
        fresh.close()
    assert ("judge_layout",) in cols


def _completions(day: str, n: int, candidate: str = "cand-a") -> pd.DataFrame:
    rows = []
    for i in range(n):
        failed = i % 4 == 3
        rows.append({
            "completion_id": f"{candidate}-{day}-{i}",
            "candidate": candidate,
            "traffic_date": day,
            "conversation_id": f"c{i}",
            "sample_index": i % 2,
            "reply": None if failed else f"reply {i} with 'quotes', a tab\tand ünïcode",
            "reasoning": None,
            "tool_trace": "[]",
            "status": "error" if failed else "ok",
            "error": "APIError: boom" if failed else None,
            "endpoint": "sim",
            "model": "m",
            "params_json": "{}",
            "prompt_tokens": None if failed else 10 + i,
            "completion_tokens": 5,
            "latency_ms": None if failed else 12.5 * i,
            "cost_usd": 0.0,
            "attempts": 1,
            "steps": 1,
            "tool_calls": 0,
        })
    return wh.CANDIDATE_COMPLETIONS.frame(rows)


def _model_calls(keys: list[str], tag: str) -> pd.DataFrame:
    # Naive UTC, as cache.store writes answered_at.
    now = dt.datetime(2026, 11, 1, 12, 30, 15, 123456, tzinfo=dt.UTC).replace(tzinfo=None)
    return wh.MODEL_CALLS.frame(
        {"request_key": k, "kind": "judge", "endpoint": "sim", "model": "m", "status": "ok",
         "payload_json": f'{{"tag": "{tag}"}}', "prompt_tokens": 1, "completion_tokens": 2,
         "answered_at": now}
        for k in keys
    )


@pytest.mark.slow
def test_read_partition_gives_back_what_duckdb_gives_back(pg, tmp_path):
    duck = duckdb.connect(str(tmp_path / "w.duckdb"))
    grades = _grades(np.random.default_rng(3))
    writes = [
        (wh.CANDIDATE_COMPLETIONS, _completions(DAYS[0], 12), {"candidate": "cand-a",
                                                              "traffic_date": DAYS[0]}),
        (wh.JUDGE_GRADES, grades, {}),
        (wh.MODEL_CALLS, _model_calls(["k1", "k2"], "x"), {}),
    ]
    for conn in (duck, pg):
        wh.replace_partitions(conn, writes)
    for table, _, keys in writes:
        want = wh.read_partition(duck, table, keys)
        got = wh.read_partition(pg, table, keys)
        order = table.primary_key or [c for c in ("completion_id", "grade_id")
                                      if c in table.column_names]
        want = want.sort_values(list(order)).reset_index(drop=True)
        got = got.sort_values(list(order)).reset_index(drop=True)
        pd.testing.assert_frame_equal(got, want, check_exact=True)
    # An empty partition is an empty frame with the same columns and dtypes.
    empty = {"candidate": "nobody", "traffic_date": DAYS[0]}
    pd.testing.assert_frame_equal(
        wh.read_partition(pg, wh.CANDIDATE_COMPLETIONS, empty),
        wh.read_partition(duck, wh.CANDIDATE_COMPLETIONS, empty),
    )
    duck.close()


# ------------------------------------------------------------------------------ transactions
@pytest.mark.slow
def test_a_failed_write_leaves_every_old_partition_whole(pg):
    keys = {"candidate": "cand-a", "traffic_date": DAYS[0]}
    funnel_keys = {"traffic_date": DAYS[0]}
    funnel = wh.SAMPLING_FUNNEL.frame([{"traffic_date": DAYS[0], "stage": "sampled",
                                        "reason": "", "n": 5}])
    wh.replace_partitions(pg, [(wh.CANDIDATE_COMPLETIONS, _completions(DAYS[0], 8), keys),
                               (wh.SAMPLING_FUNNEL, funnel, funnel_keys)])
    bad = _completions(DAYS[0], 8)
    bad.loc[5, "sample_index"] = 2**40  # out of INTEGER range: the server refuses the COPY
    newer = funnel.assign(n=6)
    with pytest.raises(psycopg.errors.NumericValueOutOfRange):
        # The funnel is replaced first, then the completions fail half-way through the COPY.
        wh.replace_partitions(pg, [(wh.SAMPLING_FUNNEL, newer, funnel_keys),
                                   (wh.CANDIDATE_COMPLETIONS, bad, keys)])
    assert wh.read_partition(pg, wh.SAMPLING_FUNNEL, funnel_keys)["n"].tolist() == [5]
    kept = wh.read_partition(pg, wh.CANDIDATE_COMPLETIONS, keys)
    assert sorted(kept["completion_id"]) == sorted(_completions(DAYS[0], 8)["completion_id"])
    assert not pg.in_transaction  # rolled back, the connection usable
    assert pg.execute("SELECT count(*) FROM sampling_funnel").fetchone() == (1,)


@pytest.mark.slow
def test_a_lost_server_connection_is_one_line_without_the_password(pg, server):
    with psycopg.connect(server.url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pg.raw.info.backend_pid])
    keys = {"traffic_date": DAYS[0]}
    funnel = wh.SAMPLING_FUNNEL.frame([{"traffic_date": DAYS[0], "stage": "sampled",
                                        "reason": "", "n": 1}])
    with pytest.raises(warehouse_pg.WarehouseConnectError) as err:
        wh.replace_partitions(pg, [(wh.SAMPLING_FUNNEL, funnel, keys)])
    message = str(err.value)
    assert message.startswith("the Postgres warehouse postgresql://") and "\n" not in message
    with pytest.raises(warehouse_pg.WarehouseConnectError, match="cannot reach") as refused:
        PgConnection("postgresql://depsim:s3cret@127.0.0.1:1/depsim")
    assert "s3cret" not in str(refused.value)


def _hold_partition(url: str, day: str, written, release, n: int) -> None:
    """Replace a partition, pausing inside the transaction (after its rows are copied) until
    ``release`` is set."""
    real_copy = warehouse_pg.copy_frame

    def copy_then_wait(*args, **kwargs):
        count = real_copy(*args, **kwargs)
        written.set()
        if not release.wait(60):
            raise TimeoutError("never released")
        return count

    warehouse_pg.copy_frame = copy_then_wait
    conn = PgConnection(url)
    try:
        keys = {"candidate": "cand-a", "traffic_date": day}
        wh.replace_partitions(conn, [(wh.CANDIDATE_COMPLETIONS, _completions(day, n), keys)])
    finally:
        conn.close()


def _write_partition(url: str, day: str, n: int, ready, go, done) -> None:
    """Connect, say so, then replace the partition when told (so the time measured is the
    write's, not the new process's imports)."""
    conn = PgConnection(url)
    try:
        ready.set()
        if not go.wait(120):
            raise TimeoutError("never told to go")
        keys = {"candidate": "cand-a", "traffic_date": day}
        wh.replace_partitions(conn, [(wh.CANDIDATE_COMPLETIONS, _completions(day, n), keys)])
    finally:
        conn.close()
    done.set()


def _writer(ctx, url: str, day: str, n: int):
    ready, go, done = ctx.Event(), ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_write_partition, args=(url, day, n, ready, go, done))
    proc.start()
    assert ready.wait(120), "the writer process never connected"
    return proc, go, done


@pytest.mark.slow
def test_writers_of_different_partitions_do_not_wait_and_of_one_partition_take_turns(url):
    ctx = mp.get_context("spawn")
    setup = PgConnection(url)
    wh.ensure_tables(setup)
    other, other_go, other_done = _writer(ctx, url, DAYS[1], 4)
    same, same_go, same_done = _writer(ctx, url, DAYS[0], 3)
    written, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_partition, args=(url, DAYS[0], written, release, 6))
    holder.start()
    try:
        assert written.wait(120), "the first writer never got into its transaction"
        # Another day while the first transaction is open: commits at once.
        started = time.monotonic()
        other_go.set()
        assert other_done.wait(30), "a writer of another partition waited on the open one"
        waited = time.monotonic() - started
        other.join(30)
        assert other.exitcode == 0
        # The same day while it is open: waits for the first to commit, then replaces it.
        same_go.set()
        assert not same_done.wait(3), "a second writer of the same partition did not wait"
        assert setup.execute(
            "SELECT count(*) FROM candidate_completions WHERE traffic_date = ?", [DAYS[0]]
        ).fetchone() == (0,)  # the open transaction's rows are not visible yet
    finally:
        release.set()
        holder.join(60)
        other_go.set()
        same_go.set()
    assert holder.exitcode == 0
    assert same_done.wait(30)
    same.join(30)
    assert same.exitcode == 0
    rows = setup.execute(
        "SELECT traffic_date, count(*) FROM candidate_completions GROUP BY 1 ORDER BY 1"
    ).fetchall()
    setup.close()
    # The later writer's 3 rows replaced the first one's 6; never 9.
    assert rows == [(DAYS[0], 3), (DAYS[1], 4)]
    assert waited < 10, f"the other partition's write took {waited:.1f}s"


def _store_many(url: str, keys: list[str], tag: str, barrier, rounds: int) -> None:
    conn = PgConnection(url)
    try:
        barrier.wait(60)
        for _ in range(rounds):
            entries = [
                {"request_key": k, "kind": "judge", "endpoint": "sim", "model": "m",
                 "status": "ok", "payload": {"tag": tag}, "prompt_tokens": 1,
                 "completion_tokens": 1}
                for k in keys
            ]
            cache.store(conn, entries)
    finally:
        conn.close()


@pytest.mark.slow
def test_two_processes_store_the_same_cache_keys_at_once(url):
    ctx = mp.get_context("spawn")
    shared = [f"shared-{i:04d}" for i in range(300)]
    barrier = ctx.Barrier(2)
    procs = [
        ctx.Process(target=_store_many,
                    args=(url, [*shared, *(f"{tag}-{i}" for i in range(50))], tag, barrier, 15))
        for tag in ("a", "b")
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
    assert [p.exitcode for p in procs] == [0, 0]  # no unique violation, no deadlock
    conn = PgConnection(url)
    try:
        total, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT request_key) FROM model_calls"
        ).fetchone() or (0, 0)
        got = cache.lookup(conn, shared[:5] + ["a-0", "b-49", "missing"])
    finally:
        conn.close()
    assert total == distinct == 300 + 50 + 50
    assert set(got) == {*shared[:5], "a-0", "b-49"}
    assert {v["tag"] for k, v in got.items() if k.startswith("shared")} <= {"a", "b"}


# ------------------------------------------------------------------------------- the numbers
def _grades(rng: np.random.Generator) -> pd.DataFrame:
    """Three arms over three days, 1-3 samples of a prefix, unscored rows, prefixes missing
    from an arm: every way a prefix can fail to pair."""
    rows = []
    for arm, k_max, p in (("baseline", 2, 0.15), ("cand-a", 3, 0.3), ("production", 1, 0.15)):
        for day in DAYS:
            for conv in range(40):
                if rng.random() < 0.1:
                    continue
                for sample in range(int(rng.integers(1, k_max + 1))):
                    unscored = rng.random() < 0.05
                    for cid, family in CATS:
                        flagged = None if unscored else bool(rng.random() < p)
                        rows.append({
                            "grade_id": f"{arm}|{day}|{conv}|{sample}|{cid}",
                            "completion_id": f"{arm}|{day}|{conv}|{sample}",
                            "candidate": arm,
                            "traffic_date": day,
                            "conversation_id": f"conv{conv}",
                            "sample_index": sample,
                            "category": cid,
                            "family": family,
                            "severity": None if unscored else (3 if flagged else 0),
                            "flagged": flagged,
                            "status": "unscored" if unscored else "scored",
                            "unscored_reason": "bad_output: no json" if unscored else None,
                            "flag_threshold": 2,
                            "judge_votes": 1,
                            "judge_agreement": None if unscored else 1.0,
                            "taxonomy_version": "t1",
                            "judge_prompt_version": "p1",
                            "judge_model": "sim-judge" if arm != "production" else "judge-b",
                            "judge_endpoint": "sim",
                        })
    return wh.JUDGE_GRADES.frame(rows)


@pytest.mark.slow
def test_the_estimates_sql_gives_the_same_numbers_on_both_backends(pg, tmp_path):
    duck = duckdb.connect(str(tmp_path / "w.duckdb"))
    grades = _grades(np.random.default_rng(11))
    for conn in (duck, pg):
        wh.replace_partitions(conn, [(wh.JUDGE_GRADES, grades, {})])
    # Analyzed on write: the next step's joins are planned on real row counts, not guesses.
    (estimated,) = pg.execute(
        "SELECT reltuples FROM pg_class WHERE oid = to_regclass('judge_grades')"
    ).fetchone() or (None,)
    assert estimated == len(grades)
    where, params = "candidate = ? AND traffic_date = ?", ["cand-a", DAYS[1]]
    rates = [rate_counts(c, "judge_grades", where, params).sort_index() for c in (duck, pg)]
    pd.testing.assert_frame_equal(rates[1], rates[0])
    assert int(rates[0]["flagged"].sum()) > 0 and int(rates[0]["graded"].sum()) > 0
    assert grade_versions(pg, "judge_grades", where, params, "x") == ("t1", "p1")

    def sums(conn, by_day):
        return paired_sums(conn, "judge_grades", baseline="baseline",
                           candidates=["cand-a", "production"], served_by_others=[DAYS[2]],
                           by_day=by_day).sort_index()

    for by_day in (False, True):
        want, got = sums(duck, by_day), sums(pg, by_day)
        pd.testing.assert_frame_equal(got, want)
    discordant = want[["n_discordant_up", "n_discordant_down"]].to_numpy().sum()
    assert discordant > 0  # the McNemar pairs are exercised, not all zero

    def compared(conn):
        return comparison_from_relation(conn, "judge_grades", CATS, baseline="baseline",
                                        served_by_others=[DAYS[2]], bh=True)

    want, got = compared(duck), compared(pg)
    pd.testing.assert_frame_equal(got, want, check_exact=True)  # same counts, same p-values
    assert want["p_value"].notna().all() and (want["p_value"] < 1).any()

    def by_day_rows(conn):
        return comparison_by_day(conn, "judge_grades", CATS, baseline="baseline",
                                 served_by_others=[DAYS[2]])

    pd.testing.assert_frame_equal(by_day_rows(pg), by_day_rows(duck), check_exact=True)

    pairs = [(name, day) for name in ("cand-a", "production") for day in DAYS]
    want, got = partition_summary(duck, pairs), partition_summary(pg, pairs)
    assert want.drop(columns="judge_models").equals(got.drop(columns="judge_models"))
    assert [list(m) for m in want["judge_models"]] == [list(m) for m in got["judge_models"]]
    assert int(want["unscored"].sum()) > 0

    want, got = (coverage_counts(c, "judge_grades", "baseline", [DAYS[2]]) for c in (duck, pg))
    pd.testing.assert_frame_equal(got, want)
    assert not want["covered"].all() and want["only_candidate"].sum() > 0  # gaps are counted
    duck.close()


# ------------------------------------------------------------------------- the whole graph
@pytest.mark.e2e
def test_the_demo_on_postgres_compares_exactly_as_on_duckdb(url, tmp_path, monkeypatch, capsys):
    """The issue's acceptance: the whole graph (sampling to comparison) on Postgres, through
    Dagster and the CLI, gives the DuckDB run's comparison: same counts, same p-values."""
    from depsim_assets.cli import main

    args = ["--days", "1", "--per-day", "80", "--sample-size", "30", "--no-progress", "--json",
            "--agentic-per-day", "0"]
    printed, stored = {}, {}
    key = ["candidate", "category"]
    for backend in ("duckdb", "postgres"):
        home = tmp_path / backend
        monkeypatch.setenv("DEPSIM_HOME", str(home))
        monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
        monkeypatch.delenv("DEPSIM_WAREHOUSE", raising=False)
        if backend == "postgres":
            monkeypatch.setenv(wh.URL_ENV, url)
        else:
            monkeypatch.delenv(wh.URL_ENV, raising=False)
        assert main(["demo", *args]) == 0
        printed[backend] = json.loads(capsys.readouterr().out)
        with wh.configured(read_only=True) as conn:
            frame = conn.execute("SELECT * FROM candidate_comparison").df()
        stored[backend] = frame.sort_values(key).reset_index(drop=True)
    assert not (tmp_path / "postgres" / "warehouse.duckdb").exists()
    assert not list((tmp_path / "postgres").rglob("*.duckdb"))  # nothing went to a file
    assert printed["postgres"] == printed["duckdb"]
    pd.testing.assert_frame_equal(stored["postgres"], stored["duckdb"], check_exact=True)
    assert len(stored["duckdb"]) > 0 and stored["duckdb"]["n_paired"].sum() > 0


@pytest.mark.slow
def test_the_resource_picks_the_backend_and_the_batch_ledger_upserts_on_both(url, tmp_path):
    from depsim_assets.models.batch import _Ledger
    from depsim_assets.resources import Warehouse

    created = dt.datetime(2026, 11, 1, 9, 0, 0, tzinfo=dt.UTC).replace(tzinfo=None)
    row = {"batch_id": "batch-1", "endpoint": "sim", "model": "m", "partition_key": "a|d",
           "input_hash": "h1", "n_requests": 3, "input_file_id": "file-in", "status": "validating",
           "output_file_id": None, "error_file_id": None, "created_at": created,
           "updated_at": created, "collected_at": None}
    found = {}
    for backend, resource in (
        ("duckdb", Warehouse(database=str(tmp_path / "w.duckdb"))),
        ("postgres", Warehouse(database=str(tmp_path / "never.duckdb"), url=url)),
    ):
        ledger = _Ledger(resource)
        ledger.insert(row)
        ledger.insert({**row, "n_requests": 4})  # the same batch again: replaced, not doubled
        ledger.update("batch-1", status="completed", output_file_id="file-out")
        found[backend] = ledger.find_open(endpoint="sim", model="m", input_hash="h1")
        with resource.get_connection() as conn:
            assert wh.dialect(conn) == backend
            assert conn.execute("SELECT count(*) FROM model_batches").fetchone() == (1,)
    assert not (tmp_path / "never.duckdb").exists()
    assert found["postgres"] is not None and found["duckdb"] is not None
    assert found["postgres"]["status"] == "completed" and found["postgres"]["n_requests"] == 4
    assert found["postgres"]["updated_at"] > created
    assert {k: v for k, v in found["postgres"].items() if k != "updated_at"} == {
        k: v for k, v in found["duckdb"].items() if k != "updated_at"
    }
