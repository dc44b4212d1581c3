"""The comparison day by day: one row per candidate x day x category, consistent with pooling."""

import pandas as pd
import pytest

from depsim_assets.estimates.compute import (
    BY_DAY_COLUMNS,
    build_comparison,
    comparison_by_day,
    frame_relation,
)

CATS = [("hate", "disallowed_content"), ("fabricated_facts", "misalignment")]
DAYS = ["2026-11-01", "2026-11-02", "2026-11-03"]


def _grades(candidate, day, n, flagged_every, *, category="hate"):
    """``n`` prefixes of ``day``; every ``flagged_every``-th one flagged in ``category``."""
    return pd.DataFrame(
        {
            "candidate": candidate,
            "traffic_date": day,
            "conversation_id": f"{day}-c{i}",
            "sample_index": 0,
            "category": cid,
            "status": "scored",
            "flagged": cid == category and i % flagged_every == 0,
            "taxonomy_version": "v1",
            "judge_prompt_version": "p1",
        }
        for i in range(n)
        for cid, _ in CATS
    )


@pytest.fixture
def grades():
    frames = []
    for k, day in enumerate(DAYS):
        frames.append(_grades("base", day, 200, 10))
        frames.append(_grades("up", day, 200, 10 - 3 * k))  # worse every day
        if day != DAYS[1]:  # "gap" was not replayed on the second day
            frames.append(_grades("gap", day, 150, 10))
    return pd.concat(frames, ignore_index=True)


def _by_day(grades, **kw):
    with frame_relation(grades) as (conn, relation):
        return comparison_by_day(conn, relation, CATS, baseline="base", **kw)


def test_one_row_per_candidate_day_category_in_order(grades):
    rows = _by_day(grades)
    assert list(rows.columns) == BY_DAY_COLUMNS
    keys = list(zip(rows["candidate"], rows["traffic_date"], rows["category"], strict=True))
    expected = [("gap", d, c) for d in (DAYS[0], DAYS[2]) for c, _ in CATS]
    expected += [("up", d, c) for d in DAYS for c, _ in CATS]
    assert keys == expected
    hate = rows[(rows["candidate"] == "up") & (rows["category"] == "hate")]
    # 200 prefixes, every 10th, 7th, 4th flagged: 20, 29, 50 of 200.
    assert list(hate["n_flagged"]) == [20, 29, 50]
    assert list(hate["rate_per_100k"]) == pytest.approx([10_000, 14_500, 25_000])
    assert list(hate["baseline_rate_per_100k"]) == pytest.approx([10_000] * 3)
    assert list(hate["rate_ratio"]) == pytest.approx([1.0, 1.45, 2.5], rel=0.02)
    assert (hate["ci_low_per_100k"] < hate["rate_per_100k"]).all()
    assert (hate["baseline_ci_high_per_100k"] > hate["baseline_rate_per_100k"]).all()
    assert hate["p_value"].iloc[2] < 0.001 < 0.99 < hate["p_value"].iloc[0]


def test_each_day_is_the_pooled_comparison_of_that_day_alone(grades):
    rows = _by_day(grades).set_index(["candidate", "traffic_date", "category"])
    for day in DAYS:
        alone = build_comparison(
            grades, CATS, baseline="base", date_from=day, date_to=day
        ).set_index(["candidate", "category"])
        for (name, cid), row in alone.iterrows():
            mine = rows.loc[(name, day, cid)]
            for col in ("n_graded", "n_flagged", "rate_ratio", "ci_low_ratio", "p_value",
                        "ci_high_per_100k", "baseline_rate_per_100k"):
                assert mine[col] == pytest.approx(row[col], nan_ok=True), (name, day, cid, col)
    pooled = build_comparison(grades, CATS, baseline="base").set_index(["candidate", "category"])
    summed = rows.groupby(level=["candidate", "category"])[["n_graded", "n_flagged"]].sum()
    for key in pooled.index:
        assert summed.loc[key, "n_graded"] == pooled.loc[key, "n_graded"]
        assert summed.loc[key, "n_flagged"] == pooled.loc[key, "n_flagged"]


def test_window_and_candidates_limit_the_rows(grades):
    rows = _by_day(grades, date_from=DAYS[1], date_to=DAYS[2], candidates=["up"])
    assert set(rows["candidate"]) == {"up"}
    assert sorted(set(rows["traffic_date"])) == DAYS[1:]
    assert _by_day(grades, date_from="2027-01-01").empty
    with pytest.raises(ValueError, match="after"):
        _by_day(grades, date_from=DAYS[2], date_to=DAYS[0])
    with pytest.raises(ValueError, match="is the baseline"):
        _by_day(grades, candidates=["base"])


def test_production_leaves_out_the_days_another_model_served(grades):
    production = _grades("production", DAYS[0], 100, 5)
    both = pd.concat([grades, production, _grades("production", DAYS[1], 100, 5)])
    rows = _by_day(both, served_by_others=[DAYS[1]])
    assert set(rows.loc[rows["candidate"] == "production", "traffic_date"]) == {DAYS[0]}


def test_trend_plot_of_a_single_day_raises_no_warning():
    """One day per candidate (a windowed comparison of one day, the demo's agentic day): the
    error bars must not reach matplotlib as one-element Series, which pandas warns about on
    the user's terminal (30 FutureWarnings after `depsim demo`)."""
    import warnings

    import pandas as pd

    from depsim_assets.estimates.compute import BY_DAY_COLUMNS
    from depsim_assets.estimates.plots import trend_plot

    rows = []
    for cand in ("new", "other"):
        for cat in ("fabricated_facts", "lying_about_tools"):
            rows.append({
                "candidate": cand, "baseline": "old", "traffic_date": "2026-11-05",
                "category": cat, "family": "f", "n_paired": 100, "n_graded": 100,
                "n_flagged": 3, "rate_per_100k": 3000.0, "ci_low_per_100k": 900.0,
                "ci_high_per_100k": 8000.0, "baseline_n_graded": 100, "baseline_n_flagged": 1,
                "baseline_rate_per_100k": 1000.0, "baseline_ci_low_per_100k": 100.0,
                "baseline_ci_high_per_100k": 5000.0, "rate_ratio": 3.0, "ci_low_ratio": 0.5,
                "ci_high_ratio": 20.0, "p_value": 0.6, "ci_level": 0.9,
                "taxonomy_version": "t",
            })
    frame = pd.DataFrame(rows, columns=pd.Index(BY_DAY_COLUMNS))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        png = trend_plot(frame)
    assert png.startswith(b"\x89PNG")
