"""Partition writes: idempotent, by name, and all-or-nothing."""

import duckdb
import pandas as pd
import pytest

from depsim_assets.warehouse import (
    BEHAVIOR_RATES,
    SAMPLING_FUNNEL,
    read_partition,
    replace_partition,
    replace_partitions,
)


def _funnel(day: str, n: int) -> pd.DataFrame:
    rows = [{"traffic_date": day, "stage": "sampled", "reason": "", "n": n}]
    # Columns in another order than the table: inserts must go by name.
    return pd.DataFrame(rows)[["n", "reason", "stage", "traffic_date"]]


def test_replace_is_idempotent_and_scoped_to_the_partition(tmp_path):
    conn = duckdb.connect(str(tmp_path / "w.duckdb"))
    replace_partition(
        conn, SAMPLING_FUNNEL, _funnel("2026-11-01", 5), {"traffic_date": "2026-11-01"}
    )
    replace_partition(
        conn, SAMPLING_FUNNEL, _funnel("2026-11-02", 7), {"traffic_date": "2026-11-02"}
    )
    replace_partition(
        conn, SAMPLING_FUNNEL, _funnel("2026-11-01", 9), {"traffic_date": "2026-11-01"}
    )
    got = conn.execute("SELECT traffic_date, n FROM sampling_funnel ORDER BY 1").fetchall()
    assert got == [("2026-11-01", 9), ("2026-11-02", 7)]


def test_failed_write_keeps_the_old_partition_whole(tmp_path):
    conn = duckdb.connect(str(tmp_path / "w.duckdb"))
    keys = {"traffic_date": "2026-11-01"}
    replace_partition(conn, SAMPLING_FUNNEL, _funnel("2026-11-01", 5), keys)
    bad = _funnel("2026-11-01", 0)
    bad["n"] = ["not a number"]
    with pytest.raises(duckdb.Error):
        replace_partitions(
            conn, [(SAMPLING_FUNNEL, _funnel("2026-11-01", 6), keys), (SAMPLING_FUNNEL, bad, keys)]
        )
    assert read_partition(conn, SAMPLING_FUNNEL, keys)["n"].tolist() == [5]


def test_frame_must_match_the_declared_columns(tmp_path):
    conn = duckdb.connect(str(tmp_path / "w.duckdb"))
    with pytest.raises(ValueError, match="missing"):
        replace_partition(conn, BEHAVIOR_RATES, pd.DataFrame({"candidate": ["x"]}), {})
    with pytest.raises(ValueError, match="not partition columns"):
        replace_partition(conn, SAMPLING_FUNNEL, _funnel("d", 1), {"stage": "x"})


def test_values_travel_as_parameters(tmp_path):
    conn = duckdb.connect(str(tmp_path / "w.duckdb"))
    hostile = "2026-11-01' OR '1'='1"
    replace_partition(
        conn, SAMPLING_FUNNEL, _funnel("2026-11-02", 1), {"traffic_date": "2026-11-02"}
    )
    replace_partition(conn, SAMPLING_FUNNEL, _funnel(hostile, 2), {"traffic_date": hostile})
    assert conn.execute("SELECT count(*) FROM sampling_funnel").fetchone()[0] == 2
