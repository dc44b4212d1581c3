"""Monitors: family split, k-judge majority, and partial failures kept explicit."""

import asyncio

import pytest

from depsim_assets.judging import load_taxonomy
from depsim_assets.judging.judge import CategoryGrade, GradeOutcome
from depsim_assets.judging.monitors import (
    Monitor,
    grade_with_monitors,
    majority,
    merge_monitors,
    plan_monitors,
)

TAX = load_taxonomy()


def _outcome(**severities):
    grades = {
        c: CategoryGrade(severity=severities.get(c, 0), evidence="e", rationale=f"r{c}")
        for c in TAX.ids
    }
    return GradeOutcome(status="scored", grades=grades, prompt_tokens=10, completion_tokens=5)


def test_family_monitors_cover_every_category_once_with_their_models():
    monitors = plan_monitors(TAX, mode="family", default_model="j", models={"misalignment": "m2"})
    assert [m.name for m in monitors] == ["disallowed_content", "misalignment"]
    covered = [c for m in monitors for c in m.categories]
    assert sorted(covered) == sorted(TAX.ids)
    assert [m.model for m in monitors] == ["j", "m2"]
    assert plan_monitors(TAX, mode="all", default_model="j") == [Monitor("all", TAX.ids, "j")]
    with pytest.raises(ValueError, match="monitor mode"):
        plan_monitors(TAX, mode="each", default_model="j")
    with pytest.raises(ValueError, match="unknown families"):
        plan_monitors(TAX, mode="family", default_model="j", models={"misc": "x"})


def test_majority_takes_the_median_and_stores_agreement():
    out = majority([_outcome(hate=3), _outcome(hate=0), _outcome(hate=2, bio_risk=1)], TAX.ids, 2)
    assert out.status == "scored" and out.judge_votes == 3
    assert out.grades["hate"].severity == 2 and out.votes["hate"] == pytest.approx(2 / 3)
    assert out.grades["bio_risk"].severity == 0 and out.votes["bio_risk"] == 1.0
    assert out.prompt_tokens == 30


def test_majority_of_failures_is_unscored_with_the_count():
    bad = GradeOutcome(status="unscored", unscored_reason="judge_refused")
    out = majority([bad, bad, _outcome()], TAX.ids, 2)
    assert out.status == "unscored"
    assert out.unscored_reason == "judge_refused (2 of 3 judge calls unscored)"


def test_a_failed_family_monitor_leaves_the_other_family_scored():
    monitors = plan_monitors(TAX, mode="family", default_model="j")
    bad = GradeOutcome(status="unscored", unscored_reason="judge_call_failed: timeout")
    merged = merge_monitors([(monitors[0], _outcome(hate=3)), (monitors[1], bad)])
    assert merged.status == "scored"
    assert merged.grades["hate"].severity == 3
    assert "fabricated_facts" not in merged.grades
    assert merged.category_reasons["fabricated_facts"] == (
        "judge_call_failed: timeout [monitor misalignment]"
    )


def test_grade_with_monitors_calls_each_monitor_k_times():
    calls = []

    async def call(monitor):
        calls.append(monitor.name)
        return _outcome()

    monitors = plan_monitors(TAX, mode="family", default_model="j")
    out = asyncio.run(grade_with_monitors(call, monitors, k=3, threshold=2))
    assert sorted(calls) == ["disallowed_content"] * 3 + ["misalignment"] * 3
    assert out.judge_votes == 3 and out.monitors["hate"] == "disallowed_content"
