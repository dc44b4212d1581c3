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
    assert out.loc[("worse", "hate"), "dates"] == "2026-11-01"


def test_versions_are_never_pooled():
    grades = pd.concat([_grades("base", [None] * 5), _grades("new", [None] * 5, version="v2")])
    with pytest.raises(VersionMixError, match="more than one taxonomy/judge-prompt version"):
        build_comparison(grades, CATS, baseline="base")


def test_missing_baseline_is_a_clear_error():
    with pytest.raises(ValueError, match="baseline 'nope' has no judge_grades"):
        build_comparison(_grades("a", [None]), CATS, baseline="nope")
