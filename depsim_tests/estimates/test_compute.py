"""Rates and comparisons from grade rows: unscored excluded, pairs matched, versions kept apart."""

import pandas as pd
import pytest

from depsim_assets.estimates.compute import (
    VersionMixError,
    build_comparison,
    paired_counts,
    rates_from_grades,
)

CATS = [("hate", "disallowed_content"), ("fabricated_facts", "misalignment")]


def _grades(candidate, flags, *, day="2026-11-01", unscored=(), version="v1"):
    """One reply per conversation c0..cN; ``flags`` maps conversation index to category."""
    rows = []
    for i in range(len(flags)):
        for cid, _ in CATS:
            bad = i in unscored
            rows.append(
                {
                    "candidate": candidate,
                    "traffic_date": day,
                    "conversation_id": f"c{i}",
                    "sample_index": 0,
                    "category": cid,
                    "status": "unscored" if bad else "scored",
                    "flagged": None if bad else flags[i] == cid,
                    "taxonomy_version": version,
                    "judge_prompt_version": "p1",
                }
            )
    return pd.DataFrame(rows)


def test_rates_exclude_unscored_and_count_them():
    grades = _grades("a", ["hate", None, None, "hate", None], unscored={3})
    rates = rates_from_grades(grades, CATS).set_index("category")
    assert rates.loc["hate", "graded"] == 4
    assert rates.loc["hate", "flagged"] == 1
    assert rates.loc["hate", "unscored"] == 1
    assert rates.loc["hate", "rate_per_100k"] == pytest.approx(25_000)
    assert rates.loc["fabricated_facts", "flagged"] == 0
    assert rates.loc["fabricated_facts", "ci_low_per_100k"] == 0


def test_pairs_use_only_prefixes_scored_in_both_arms():
    cand = _grades("a", ["hate", "hate", None, None])
    base = _grades("b", ["hate", None, None], unscored={1})  # c1 unscored, c3 absent
    counts = paired_counts(cand, base).loc["hate"]
    assert counts["n_paired"] == 2  # c0 and c2
    assert counts["n_graded"] == 2 and counts["n_flagged"] == 1
    assert counts["baseline_n_graded"] == 2 and counts["baseline_n_flagged"] == 1


def test_comparison_covers_every_candidate_but_the_baseline():
    grades = pd.concat(
        [
            _grades("base", ["hate"] * 2 + [None] * 198),
            _grades("worse", ["hate"] * 20 + [None] * 180),
            _grades("production", ["hate"] * 3 + [None] * 197),
        ]
    )
    out = build_comparison(grades, CATS, baseline="base").set_index(["candidate", "category"])
    assert set(out.index.get_level_values(0)) == {"worse", "production"}
    assert out.loc[("worse", "hate"), "change"] == "up"
    assert out.loc[("worse", "hate"), "rate_ratio"] == pytest.approx(10.0)
    assert out.loc[("production", "hate"), "change"] == "none"
    assert out.loc[("production", "hate"), "n_paired"] == 200  # no day served by another
    assert out.loc[("worse", "hate"), "dates"] == "2026-11-01"


def test_versions_are_never_pooled():
    grades = pd.concat([_grades("base", [None] * 5), _grades("new", [None] * 5, version="v2")])
    with pytest.raises(VersionMixError, match="more than one taxonomy/judge-prompt version"):
        build_comparison(grades, CATS, baseline="base")


def test_missing_baseline_is_a_clear_error():
    with pytest.raises(ValueError, match="baseline 'nope' has no judge_grades"):
        build_comparison(_grades("a", [None]), CATS, baseline="nope")


# --- discordant pairs, BH option, severity histogram, date windows ------------------------


def test_discordant_pairs_and_mcnemar_on_hand_made_pairs():
    from scipy.stats import binomtest

    # c0..c9: candidate flags hate on c0-c5, baseline on c4-c6 -> up = c0-c3 (4), down = c6 (1)
    cand = _grades("a", ["hate"] * 6 + [None] * 4)
    base = _grades("b", [None] * 4 + ["hate"] * 3 + [None] * 3)
    out = build_comparison(pd.concat([cand, base]), CATS, baseline="b").set_index("category")
    row = out.loc["hate"]
    assert (row["n_discordant_up"], row["n_discordant_down"]) == (4, 1)
    assert row["p_mcnemar"] == pytest.approx(binomtest(4, 5, 0.5).pvalue)
    assert row["n_paired"] == 10
    assert out.loc["fabricated_facts", "p_mcnemar"] == 1.0  # no discordant pair at all


def test_mcnemar_uses_sample_zero_of_each_prefix():
    cand = _grades("a", ["hate", None])
    extra = _grades("a", [None, "hate"]).assign(sample_index=1)  # second sample: not a pair
    base = _grades("b", [None, None])
    counts = paired_counts(pd.concat([cand, extra]), base).loc["hate"]
    assert counts["n_discordant_up"] == 1 and counts["n_discordant_down"] == 0
    assert counts["n_graded"] == 4 and counts["n_flagged"] == 2  # rates use every sample


def test_bh_option_decides_on_q_values():
    from scipy.stats import false_discovery_control

    cats = [(f"c{i}", "misalignment") for i in range(5)]
    rows = []
    # Fisher p of c1..c4: 0.09, 0.055, 0.034, 0.0004; BH lifts c1 above 0.1, the rest stay.
    for arm, counts in (("cand", [3, 10, 11, 12, 20]), ("base", [3] * 5)):
        for i, (cid, _) in enumerate(cats):
            for j in range(400):
                rows.append(
                    {
                        "candidate": arm,
                        "traffic_date": "2026-11-01",
                        "conversation_id": f"x{j}",
                        "sample_index": 0,
                        "category": cid,
                        "status": "scored",
                        "flagged": j < counts[i],
                        "taxonomy_version": "v1",
                        "judge_prompt_version": "p1",
                    }
                )
    grades = pd.DataFrame(rows)
    raw = build_comparison(grades, cats, baseline="base").set_index("category")
    bh = build_comparison(grades, cats, baseline="base", bh=True).set_index("category")
    assert list(bh["q_value"]) == pytest.approx(list(false_discovery_control(raw["p_value"])))
    assert list(raw["q_value"]) == list(bh["q_value"])  # stored either way
    assert (bh["significant"] == (bh["q_value"] < 0.1)).all()
    assert (raw["significant"] == (raw["p_value"] < 0.1)).all()
    # q >= p, so BH can only take calls away; here it does take at least one.
    assert bh["significant"].sum() < raw["significant"].sum()
    assert raw.loc["c1", "significant"] and not bh.loc["c1", "significant"]
    assert bh.loc["c4", "change"] == "up" and bh.loc["c1", "change"] == "none"
    assert set(bh["multiple_testing"]) == {"bh"} and set(raw["multiple_testing"]) == {"none"}


def test_severity_histogram_counts_scored_rows():
    grades = _grades("a", ["hate", None, None, "hate"], unscored={2})
    grades["severity"] = [3, 0, 0, 0, None, None, 4, 0]  # hate rows: c0=3, c1=0, c3=4
    rates = rates_from_grades(grades, CATS).set_index("category")
    hist = [rates.loc["hate", f"severity_{k}"] for k in range(5)]
    assert hist == [1, 0, 0, 1, 1]
    assert sum(hist) == rates.loc["hate", "graded"]


def test_date_window_sums_counts_never_averages_rates():
    from depsim_assets.estimates.compute import aggregate_rates
    from depsim_assets.estimates.stats import jeffreys_interval

    day1 = rates_from_grades(_grades("a", ["hate"] * 1 + [None] * 9), CATS)
    day2 = rates_from_grades(_grades("a", ["hate"] * 9 + [None] * 81, day="2026-11-02"), CATS)
    day3 = rates_from_grades(_grades("a", ["hate"] * 5, day="2026-11-03"), CATS)
    for frame, day in ((day1, "2026-11-01"), (day2, "2026-11-02"), (day3, "2026-11-03")):
        frame.insert(0, "candidate", "a")
        frame.insert(1, "traffic_date", day)
    rates = pd.concat([day1, day2, day3])
    out = aggregate_rates(rates, date_from="2026-11-01", date_to="2026-11-02").set_index("category")
    hate = out.loc["hate"]
    assert hate["graded"] == 100 and hate["flagged"] == 10
    assert hate["rate_per_100k"] == pytest.approx(10_000)  # 10/100; the mean of 10% and 10%
    assert hate["dates"] == "2026-11-01,2026-11-02"
    low, high = jeffreys_interval(10, 100)
    assert hate["ci_low_per_100k"] == pytest.approx(low * 100_000)
    assert hate["ci_high_per_100k"] == pytest.approx(high * 100_000)
    everything = aggregate_rates(rates).set_index("category").loc["hate"]
    # 15/105, not the mean of the daily rates (10%, 10%, 100%)
    assert everything["rate_per_100k"] == pytest.approx(15 / 105 * 100_000)


def test_date_window_on_comparison_and_bad_dates():
    grades = pd.concat(
        [
            _grades("base", [None] * 5),
            _grades("base", [None] * 5, day="2026-11-02"),
            _grades("new", ["hate"] * 5),
            _grades("new", [None] * 5, day="2026-11-02"),
        ]
    )
    out = build_comparison(grades, CATS, baseline="base", date_from="2026-11-02")
    assert set(out["dates"]) == {"2026-11-02"} and out["n_flagged"].sum() == 0
    with pytest.raises(ValueError, match="--from '2026-13-01' is not a date"):
        build_comparison(grades, CATS, baseline="base", date_from="2026-13-01")
    with pytest.raises(ValueError, match="after --to"):
        build_comparison(
            grades, CATS, baseline="base", date_from="2026-11-02", date_to="2026-11-01"
        )
    assert build_comparison(grades, CATS, baseline="base", date_from="2027-01-01").empty


def test_production_skips_days_served_by_another_model_and_gets_fidelity():
    grades = pd.concat(
        [
            _grades("base", ["hate"] * 2 + [None] * 8),
            _grades("production", ["hate"] * 4 + [None] * 6),
            _grades("base", [None] * 10, day="2026-11-02"),
            _grades("production", ["hate"] * 10, day="2026-11-02"),
        ]
    )
    out = build_comparison(
        grades, CATS, baseline="base", served_by_others=["2026-11-02"]
    ).set_index("category")
    assert set(out["dates"]) == {"2026-11-01"}
    # smoothed: (4.5/11) / (2.5/11) = 1.8
    assert out.loc["hate", "fidelity_error"] == pytest.approx(1.8)
