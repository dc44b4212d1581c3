"""The trend view in Dagster: per-category rate metadata on behavior_rates partitions, and a
windowed candidate_comparison (Launchpad config) with its per-day table and plot."""

import dagster as dg
import duckdb
import pytest

from depsim_assets import config
from depsim_assets.cli import main
from depsim_assets.definitions import ASSETS, build_resources
from depsim_assets.estimates.assets import taxonomy_categories
from depsim_assets.estimates.compute import BY_DAY_COLUMNS
from depsim_assets.taxonomy import CATEGORY_IDS
from depsim_assets.warehouse import CANDIDATE_COMPARISON_BY_DAY
from depsim_tests.estimates.test_forecast import (  # noqa: F401  (a module-scoped fixture)
    DAYS,
    _metadata,
    _pngs,
    warehouse_home,
)


def _by_day_rows():
    with duckdb.connect(str(config.warehouse_path()), read_only=True) as conn:
        return conn.execute("SELECT * FROM candidate_comparison_by_day").df()


def test_the_table_is_declared_with_the_columns_the_estimates_write():
    assert CANDIDATE_COMPARISON_BY_DAY.column_names == BY_DAY_COLUMNS


@pytest.mark.slow  # materializes assets (module fixture)
def test_comparison_writes_every_day_and_plots_it(warehouse_home):  # noqa: F811
    rows = _by_day_rows()
    # old is the baseline; new and production against it, each on the days it shares.
    assert len(rows) == (len(DAYS) + len(DAYS)) * len(CATEGORY_IDS)
    assert sorted(set(rows["traffic_date"])) == DAYS  # production's deployed day left out
    meta = _metadata(warehouse_home["instance"], "candidate_comparison")
    assert meta["dates"].value == DAYS
    table = meta["by_day"].value
    assert len(table.records) == len(rows)
    assert {c.name for c in table.schema.columns} >= {"candidate", "traffic_date", "rate_ratio"}
    (image,) = _pngs(meta["trend_plot"].value)
    assert image.width >= 900 and image.height >= 700  # 20 panels, readable
    # The pooled rows are the sums of the days (same run, same pairing).
    with duckdb.connect(str(config.warehouse_path()), read_only=True) as conn:
        pooled = conn.execute(
            "SELECT candidate, category, n_graded, n_flagged FROM candidate_comparison"
        ).df()
    summed = rows.groupby(["candidate", "category"])[["n_graded", "n_flagged"]].sum()
    for rec in pooled.to_dict("records"):
        key = (rec["candidate"], rec["category"])
        assert summed.loc[key, "n_graded"] == rec["n_graded"]
        assert summed.loc[key, "n_flagged"] == rec["n_flagged"]


@pytest.mark.slow  # materializes assets (module fixture)
def test_a_launchpad_window_shows_only_its_days(warehouse_home):  # noqa: F811
    window = {"date_from": DAYS[1], "date_to": DAYS[2], "candidates": ["new"]}
    result = dg.materialize(
        ASSETS,
        selection=["candidate_comparison"],
        instance=warehouse_home["instance"],
        resources=build_resources(),
        run_config={"ops": {"candidate_comparison": {"config": window}}},
    )
    assert result.success
    rows = _by_day_rows()
    assert set(rows["candidate"]) == {"new"}
    assert sorted(set(rows["traffic_date"])) == DAYS[1:]
    with duckdb.connect(str(config.warehouse_path()), read_only=True) as conn:
        dates = conn.execute("SELECT DISTINCT dates FROM candidate_comparison").fetchall()
    assert dates == [(",".join(DAYS[1:]),)]
    meta = _metadata(warehouse_home["instance"], "candidate_comparison")
    assert meta["dates"].value == DAYS[1:]
    # A reversed window fails the run with the reason, before anything is written.
    bad = dg.materialize(
        ASSETS,
        selection=["candidate_comparison"],
        instance=warehouse_home["instance"],
        resources=build_resources(),
        run_config={"ops": {"candidate_comparison": {"config": {
            "date_from": DAYS[2], "date_to": DAYS[0]}}}},
        raise_on_error=False,
    )
    assert not bad.success
    assert sorted(set(_by_day_rows()["traffic_date"])) == DAYS[1:]


@pytest.mark.slow  # materializes assets (module fixture)
def test_behavior_rates_carries_each_categorys_rate(warehouse_home):  # noqa: F811
    instance = warehouse_home["instance"]
    instance.add_dynamic_partitions("candidate", ["new"])
    key = dg.MultiPartitionKey({"candidate": "new", "traffic_date": DAYS[0]})
    result = dg.materialize(
        ASSETS,
        selection=["behavior_rates"],
        instance=instance,
        resources=build_resources(),
        partition_key=key,
    )
    assert result.success
    meta = _metadata(instance, "behavior_rates")
    with duckdb.connect(str(config.warehouse_path()), read_only=True) as conn:
        stored = dict(
            conn.execute(
                "SELECT category, rate_per_100k FROM behavior_rates"
                " WHERE candidate = 'new' AND traffic_date = ?",
                [DAYS[0]],
            ).fetchall()
        )
    for cid, _ in taxonomy_categories():
        value = meta[f"rate_per_100k/{cid}"].value
        assert isinstance(value, float) and value == pytest.approx(stored[cid], abs=0.05)
    assert "replies" in meta and "flags" in meta  # the totals stay


@pytest.mark.slow  # materializes assets (module fixture)
def test_compare_by_day_json_and_the_report_plot(warehouse_home, capsys):  # noqa: F811
    assert main(["compare", "--by-day", "--json", "--candidates", "new"]) == 0
    import json

    report = json.loads(capsys.readouterr().out)
    assert report["baseline"] == "old" and report["dates"] == DAYS
    assert len(report["rows"]) == len(DAYS) * len(CATEGORY_IDS)
    first = report["rows"][0]
    assert [r["traffic_date"] for r in report["rows"][:3]] == DAYS  # a category's days together
    assert {"rate_per_100k", "ci_low_per_100k", "ci_high_per_100k", "baseline_rate_per_100k",
            "rate_ratio", "n_graded", "p_value"} <= set(first)
    assert main(["compare", "--by-day", "--candidates", "new"]) == 0
    text = capsys.readouterr().out
    assert "new vs old" in text and DAYS[2] in text
    out = warehouse_home["home"] / "trend-report.html"
    assert main(["report", "--out", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    assert "<h2>Day by day</h2>" in html


def test_the_metadata_table_keeps_whole_latest_days():
    import pandas as pd

    from depsim_assets.estimates.assets import latest_days

    frame = pd.DataFrame(
        {"traffic_date": [f"2026-11-{d:02d}" for d in range(1, 11) for _ in range(20)]}
    )
    assert latest_days(frame, 1_000) is frame
    kept = latest_days(frame, 70)
    assert sorted(set(kept["traffic_date"])) == ["2026-11-08", "2026-11-09", "2026-11-10"]
    assert len(kept) == 60
