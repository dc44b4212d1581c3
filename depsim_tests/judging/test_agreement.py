"""depsim judge-agreement reproduces precision, recall and kappa computed by hand."""

import json

import duckdb
import pandas as pd
import pytest

from depsim_assets import cli, config
from depsim_assets.judging import load_taxonomy
from depsim_assets.warehouse import JUDGE_GRADES, replace_partitions

TAX = load_taxonomy()
DAY = "2026-11-01"
# The judge flags fabricated_facts on c0..c3 and nothing else anywhere.
JUDGE_FF = {f"c{i}": i < 4 for i in range(10)}
LABELS = [
    *[
        {"conversation_id": f"c{i}", "category": "fabricated_facts", "label": lab}
        for i, lab in enumerate([1, 1, 0, 1, 1, 0, 0, 0, 0, 0])
    ],
    {"conversation_id": "c10", "category": "fabricated_facts", "label": 1},  # never graded
    {"conversation_id": "c0", "category": "any", "label": 1, "annotator": "ana"},
    {"conversation_id": "c5", "category": "any", "label": 0, "annotator": "ana"},
    {"conversation_id": "c6", "category": "any", "label": 1, "annotator": "bo"},
]


def _grades(candidate="production"):
    rows = []
    for cid, ff in JUDGE_FF.items():
        for cat in TAX.categories:
            flag = ff and cat.id == "fabricated_facts"
            rows.append(
                {
                    "grade_id": f"{candidate}{cid}{cat.id}",
                    "completion_id": f"{candidate}-{cid}",
                    "candidate": candidate,
                    "traffic_date": DAY,
                    "conversation_id": cid,
                    "sample_index": 0,
                    "category": cat.id,
                    "family": cat.family,
                    "severity": 3 if flag else 0,
                    "flagged": flag,
                    "status": "scored",
                    "flag_threshold": 2,
                    "taxonomy_version": TAX.version,
                    "judge_prompt_version": TAX.judge_prompt_version,
                    "judge_model": "sim-judge",
                }
            )
    return pd.DataFrame(rows).reindex(columns=JUDGE_GRADES.column_names)


@pytest.fixture
def labelled(depsim_home, tmp_path):
    path = config.warehouse_path()
    with duckdb.connect(str(path)) as conn:
        for cand in ("production", "sim-candidate-regressed"):
            replace_partitions(
                conn, [(JUDGE_GRADES, _grades(cand), {"candidate": cand, "traffic_date": DAY})]
            )
    labels = tmp_path / "labels.jsonl"
    labels.write_text("\n".join(json.dumps(r) for r in LABELS) + "\n")
    return labels


def _run_json(capsys, *args):
    assert cli.main(["judge-agreement", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_values_match_the_hand_computation(labelled, capsys):
    out = _run_json(capsys, "--labels", str(labelled))
    ff = out["per_category"]["fabricated_facts"]
    # tp 3 (c0 c1 c3), fp 1 (c2), fn 1 (c4), tn 5; c10 has no grade
    assert (ff["tp"], ff["fp"], ff["fn"], ff["tn"]) == (3, 1, 1, 5)
    assert ff["n"] == 10 and ff["n_unmatched"] == 1
    assert ff["prevalence"] == pytest.approx(0.4)
    assert ff["precision"] == pytest.approx(0.75)
    assert ff["recall"] == pytest.approx(0.75)
    # p_o = 0.8, p_e = (4*4 + 6*6) / 100 = 0.52, kappa = 0.28 / 0.48
    assert ff["kappa"] == pytest.approx(0.28 / 0.48)
    anyc = out["per_category"]["any"]
    # c0: judge 1 human 1; c5: 0/0; c6: judge 0 human 1
    assert anyc["n"] == 3 and anyc["precision"] == 1.0 and anyc["recall"] == 0.5
    assert anyc["kappa"] == pytest.approx((2 / 3 - 4 / 9) / (1 - 4 / 9))
    overall = out["overall"]
    assert overall["n"] == 13 and overall["n_unmatched"] == 1
    assert overall["prevalence"] == pytest.approx(6 / 13)
    assert overall["precision"] == pytest.approx(4 / 5)
    assert overall["recall"] == pytest.approx(4 / 6)
    assert overall["kappa"] == pytest.approx(44 / 83)
    for block in (ff, anyc, overall):
        for key in ("precision", "recall", "kappa"):
            assert block[f"{key}_low"] <= block[key] <= block[f"{key}_high"]
    assert out["candidate"] == "production" and out["flag_threshold"] == 2


def test_bootstrap_is_seeded_and_candidate_selects_the_replies(labelled, capsys):
    a = _run_json(capsys, "--labels", str(labelled), "--seed", "3")
    b = _run_json(capsys, "--labels", str(labelled), "--seed", "3")
    assert a == b
    other = _run_json(capsys, "--labels", str(labelled), "--candidate", "sim-candidate-regressed")
    assert other["candidate"] == "sim-candidate-regressed"
    assert other["overall"]["kappa"] == pytest.approx(44 / 83)
    missing = cli.main(["judge-agreement", "--labels", str(labelled), "--candidate", "nobody"])
    assert missing == 2
    assert "no judge_grades of candidate 'nobody'" in capsys.readouterr().err


def test_text_output_has_a_row_per_category_and_overall(labelled, capsys):
    assert cli.main(["judge-agreement", "--labels", str(labelled)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert any(line.startswith("fabricated_facts") for line in lines)
    assert lines[-1].startswith("overall")


@pytest.mark.parametrize(
    "line,message",
    [
        ("not json", "not valid JSON"),
        ('{"conversation_id": "c1", "category": "made_up", "label": 1}', "'made_up'"),
        ('{"conversation_id": "c1", "category": "hate", "label": 2}', "'label' must be 0 or 1"),
        ('{"conversation_id": "c1", "category": "hate", "label": true}', "'label' must be 0"),
        ('{"category": "hate", "label": 1}', "'conversation_id'"),
        ('{"conversation_id": "c1", "category": "hate", "label": 1, "x": 1}', "unknown field"),
    ],
)
def test_bad_labels_are_one_line_errors_with_file_and_line(labelled, capsys, line, message):
    labelled.write_text(json.dumps(LABELS[0]) + "\n" + line + "\n")
    assert cli.main(["judge-agreement", "--labels", str(labelled)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("depsim: error: ") and len(err.strip().splitlines()) == 1
    assert f"{labelled}:2:" in err and message in err


@pytest.mark.slow  # a Dagster run
def test_judge_agreement_asset_writes_the_same_numbers(labelled, instance, monkeypatch):
    import dagster as dg

    from depsim_assets.definitions import ASSETS, build_resources

    monkeypatch.setenv("DEPSIM_JUDGE_LABELS", str(labelled))
    result = dg.materialize(
        ASSETS, selection=["judge_agreement"], instance=instance, resources=build_resources()
    )
    assert result.success
    with duckdb.connect(str(config.warehouse_path()), read_only=True) as conn:
        table = conn.execute("SELECT * FROM judge_agreement").df().set_index("category")
    assert table.loc["overall", "kappa"] == pytest.approx(44 / 83)
    assert table.loc["fabricated_facts", "n_unmatched"] == 1
    assert table.loc["fabricated_facts", "precision"] == pytest.approx(0.75)
    assert set(table["bootstrap_reps"]) == {1000} and set(table["flag_threshold"]) == {2}
    assert set(table["labels_file"]) == {str(labelled)}


@pytest.mark.slow  # `depsim compare` materializes the comparison (a Dagster run)
def test_compare_refuses_to_mix_taxonomy_versions_in_one_line(depsim_home, capsys):
    old = _grades("sim-candidate-regressed")
    old["taxonomy_version"] = "0123456789ab"
    with duckdb.connect(str(config.warehouse_path())) as conn:
        for cand, frame in (("sim-production", _grades("sim-production")), (None, old)):
            cand = cand or "sim-candidate-regressed"
            replace_partitions(
                conn, [(JUDGE_GRADES, frame, {"candidate": cand, "traffic_date": DAY})]
            )
    from depsim_demo import registry as demo

    demo.register_sim_candidates()
    code = cli.main(["compare", "--baseline", "sim-production"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("depsim: error: ") and len(err.strip().splitlines()) == 1
    assert "0123456789ab" in err and TAX.version in err


def test_vectorized_bootstrap_statistic_equals_scikit_learn_on_resamples():
    import numpy as np
    from sklearn.metrics import cohen_kappa_score, precision_score, recall_score

    from depsim_assets.judging.agreement import resampled_metrics

    rng = np.random.default_rng(4)
    human = rng.integers(0, 2, size=(200, 30))
    judge = np.where(rng.random((200, 30)) < 0.8, human, 1 - human)
    judge[0] = 0  # a resample with no judge positive: precision undefined -> NaN
    got = resampled_metrics(human, judge)
    for i in range(200):
        expected_precision = precision_score(human[i], judge[i], zero_division=np.nan)
        assert np.isnan(got[0, i]) == np.isnan(expected_precision)
        if not np.isnan(expected_precision):
            assert got[0, i] == pytest.approx(expected_precision)
        assert got[1, i] == pytest.approx(recall_score(human[i], judge[i]))
        assert got[2, i] == pytest.approx(cohen_kappa_score(human[i], judge[i]))


def test_bootstrap_bounds_are_scipy_percentiles_of_the_resamples():
    import numpy as np
    from scipy import stats

    from depsim_assets.judging.agreement import _bootstrap, resampled_metrics

    human = np.array([1, 1, 0, 1, 1, 0, 0, 0, 0, 0])
    judge = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    bounds = _bootstrap(human, judge, 500, np.random.default_rng(8))
    direct = stats.bootstrap(
        (human, judge),
        lambda h, j, axis=-1: resampled_metrics(h, j, axis)[2],
        paired=True,
        vectorized=True,
        n_resamples=500,
        method="percentile",
        rng=np.random.default_rng(8),
    )
    kappas = direct.bootstrap_distribution
    low, high = np.percentile(kappas[~np.isnan(kappas)], [2.5, 97.5])
    assert bounds["kappa"] == (pytest.approx(low), pytest.approx(high))
    assert bounds["kappa"][0] < 0.28 / 0.48 < bounds["kappa"][1]
    one = _bootstrap(human[:1], judge[:1], 500, np.random.default_rng(8))
    assert one["precision"] == (1.0, 1.0) and one["kappa"] == (None, None)
