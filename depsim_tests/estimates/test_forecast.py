"""Forecast validation and resampling fidelity: hand-made counts, then real materializations."""

import base64
import io
import json
import math
import re
import statistics

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from depsim_assets import config
from depsim_assets.cli import main
from depsim_assets.definitions import ASSETS, build_resources
from depsim_assets.estimates.assets import taxonomy_categories
from depsim_assets.estimates.compute import rates_from_grades
from depsim_assets.estimates.forecast import SUMMARY, validate_forecast
from depsim_assets.registry import Candidate, Registry, save_registry
from depsim_assets.warehouse import BEHAVIOR_RATES, JUDGE_GRADES, replace_partitions

CATS = [("a", "misalignment"), ("b", "misalignment"), ("c", "disallowed_content")]


def _rates(rows):
    """behavior_rates-like frame from (candidate, date, category, flagged, graded)."""
    return pd.DataFrame(
        rows, columns=["candidate", "traffic_date", "category", "flagged", "graded"]
    )


def _smooth(x, n):
    return (x + 0.5) / (n + 1)


def test_validate_forecast_on_hand_made_counts():
    rows = []
    for day in ("d1", "d2"):
        rows += [
            ("cand", day, "a", 10, 500),  # predicted a: 20/1000
            ("cand", day, "b", 5, 500),  # predicted b: 10/1000
            ("cand", day, "c", 0, 500),
            ("base", day, "a", 20, 500),  # baseline sim a: 40/1000 -> predicted down
            ("base", day, "b", 5, 500),
            ("base", day, "c", 0, 500),
            ("production", day, "a", 20, 500),  # previous a: 40/1000
            ("production", day, "b", 10, 500),  # previous b: 20/1000
            ("production", day, "c", 1, 500),
        ]
    rows += [
        ("production", "d3", "a", 9, 1000),  # realised a: 9/1000, moved down 4x
        ("production", "d3", "b", 21, 1000),  # realised b: ~ previous, not scored
        ("production", "d3", "c", 0, 1000),
    ]
    out = validate_forecast(_rates(rows), "cand", ["d3"], CATS, baseline="base")
    by = out.set_index("category")
    assert by.loc["a", "prediction_dates"] == "d1,d2" and by.loc["a", "deployed_dates"] == "d3"
    err_a = max(_smooth(20, 1000) / _smooth(9, 1000), _smooth(9, 1000) / _smooth(20, 1000))
    assert by.loc["a", "multiplicative_error"] == pytest.approx(err_a)
    assert (
        by.loc["a", "predicted_direction"] == "down" and by.loc["a", "realised_direction"] == "down"
    )
    assert by.loc["a", "direction_scored"] and by.loc["a", "direction_correct"] == 1.0
    assert not by.loc["b", "direction_scored"] and math.isnan(by.loc["b", "direction_correct"])
    # the realised move of a (9/1000 vs 40/1000) is significant; Fisher p by scipy
    from scipy.stats import fisher_exact

    p_a = fisher_exact([[9, 991], [40, 960]]).pvalue
    assert by.loc["a", "realised_change_p"] == pytest.approx(p_a) and p_a < 0.1
    assert by.loc["a", "direction_correct_significant"] == 1.0
    # c moved from 2/1000 to 0/1000: >= 1.5x on smoothed rates, but noise (not significant)
    assert by.loc["c", "direction_scored"] and math.isnan(
        by.loc["c", "direction_correct_significant"]
    )
    assert by.loc[SUMMARY, "direction_correct_significant"] == 1.0
    # NLL by hand: -log C(n, x) p^x (1-p)^(n-x) at the smoothed predicted rate
    p = _smooth(20, 1000)
    nll_a = -(math.log(math.comb(1000, 9)) + 9 * math.log(p) + 991 * math.log(1 - p))
    assert by.loc["a", "nll"] == pytest.approx(nll_a, rel=1e-9)
    errors = [by.loc[c, "multiplicative_error"] for c in "abc"]
    assert by.loc[SUMMARY, "multiplicative_error"] == pytest.approx(statistics.median(errors))
    scored = [by.loc[c, "direction_correct"] for c in "abc" if by.loc[c, "direction_scored"]]
    assert by.loc[SUMMARY, "direction_correct"] == pytest.approx(sum(scored) / len(scored))
    assert by.loc[SUMMARY, "nll"] == pytest.approx(sum(by.loc[c, "nll"] for c in "abc"))


def test_validate_forecast_refuses_without_data():
    rows = [("cand", "d1", "a", 1, 10), ("production", "d1", "a", 1, 10)]
    with pytest.raises(ValueError, match="production has no behavior_rates on its deployed days"):
        validate_forecast(_rates(rows), "cand", ["d2"], CATS)
    with pytest.raises(ValueError, match="no day before its first deployed day"):
        validate_forecast(_rates(rows), "cand", ["d1"], CATS)


# --- the assets and the report, materialized on a warehouse of synthetic grades ---------------

DAYS = ["2026-11-01", "2026-11-02", "2026-11-03"]
DEPLOYED = "2026-11-04"
N = 400


def _grade_rows(candidate, day, rates, rng):
    rows = []
    for cid, family in taxonomy_categories():
        flags = rng.random(N) < rates.get(cid, 0.01)
        for j in range(N):
            rows.append(
                {
                    "candidate": candidate,
                    "traffic_date": day,
                    "conversation_id": f"{day}-c{j}",
                    "sample_index": 0,
                    "category": cid,
                    "family": family,
                    "severity": 2 if flags[j] else 0,
                    "flagged": bool(flags[j]),
                    "status": "scored",
                    "flag_threshold": 2,
                    "taxonomy_version": "tax1",
                    "judge_prompt_version": "prompt1",
                    "judge_model": "judge-x",
                }
            )
    frame = pd.DataFrame(rows)
    for col in JUDGE_GRADES.column_names:
        if col not in frame:
            frame[col] = None
    return frame[JUDGE_GRADES.column_names]


@pytest.fixture(scope="module")
def warehouse_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("forecast-home")
    with pytest.MonkeyPatch.context() as mp, dg.DagsterInstance.ephemeral() as instance:
        mp.setenv("DEPSIM_HOME", str(home))
        mp.delenv("DEPSIM_WAREHOUSE", raising=False)
        save_registry(
            Registry(
                baseline="old",
                candidates=[
                    Candidate(name="old", base_url="sim", model="m-old"),
                    Candidate(name="new", base_url="sim", model="m-new", deployed_on=[DEPLOYED]),
                ],
            )
        )
        rng = np.random.default_rng(3)
        old = {"fabricated_facts": 0.05, "hate": 0.01}
        new = {"fabricated_facts": 0.01, "hate": 0.01}
        arms = [("old", d, old) for d in DAYS] + [("new", d, new) for d in DAYS]
        arms += [("production", d, old) for d in DAYS] + [("production", DEPLOYED, new)]
        conn = duckdb.connect(str(config.warehouse_path()))
        for cand, day, rates in arms:
            grades = _grade_rows(cand, day, rates, rng)
            out = rates_from_grades(grades, taxonomy_categories())
            out.insert(0, "candidate", cand)
            out.insert(1, "traffic_date", day)
            out["flag_threshold"] = 2
            out["taxonomy_version"] = "tax1"
            out["judge_prompt_version"] = "prompt1"
            keys = {"candidate": cand, "traffic_date": day}
            replace_partitions(
                conn,
                [
                    (JUDGE_GRADES, grades, keys),
                    (BEHAVIOR_RATES, out[BEHAVIOR_RATES.column_names], keys),
                ],
            )
        conn.close()
        result = dg.materialize(
            ASSETS,
            selection=["candidate_comparison", "forecast_validation"],
            instance=instance,
            resources=build_resources(),
        )
        assert result.success
        yield {"home": home, "instance": instance, "mp": mp}


def _metadata(instance, key):
    event = instance.get_latest_materialization_event(dg.AssetKey(key))
    return event.asset_materialization.metadata


def _pngs(markdown_or_html: str) -> list[Image.Image]:
    found = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", markdown_or_html)
    images = []
    for data in found:
        raw = base64.b64decode(data, validate=True)
        assert raw[:8] == b"\x89PNG\r\n\x1a\n"
        image = Image.open(io.BytesIO(raw))
        image.load()  # decodes every pixel: a truncated or corrupt PNG raises here
        images.append(image)
    return images


@pytest.mark.slow  # materializes the graph (module fixture)
def test_forecast_validation_asset_has_the_deployment(warehouse_home):
    with duckdb.connect(str(config.warehouse_path()), read_only=True) as conn:
        table = conn.execute("SELECT * FROM forecast_validation").df()
    assert set(table["candidate"]) == {"new"}
    assert len(table) == 21
    row = table.set_index("category").loc["fabricated_facts"]
    assert row["predicted_direction"] == "down" and row["realised_direction"] == "down"
    assert row["direction_correct"] == 1.0
    assert row["deployed_dates"] == DEPLOYED and row["prediction_dates"] == ",".join(DAYS)
    meta = _metadata(warehouse_home["instance"], "forecast_validation")
    summary = table.set_index("category").loc[SUMMARY]
    # Metadata numbers are rounded to 4 significant digits (metadata.rounded).
    assert meta["median_multiplicative_error"].value == pytest.approx(
        summary["multiplicative_error"], rel=1e-3
    )
    assert 1.0 <= summary["multiplicative_error"] < 2.0
    assert "direction_accuracy" in meta
    (image,) = _pngs(meta["predicted_vs_realised"].value)
    assert image.width >= 300 and image.height >= 300


@pytest.mark.slow  # materializes the graph (module fixture)
def test_comparison_metadata_has_funnels_forest_and_fidelity(warehouse_home):
    meta = _metadata(warehouse_home["instance"], "candidate_comparison")
    for key in ("forest_plot", "funnel_misalignment", "funnel_disallowed_content"):
        (image,) = _pngs(meta[key].value)
        assert image.width >= 300 and image.height >= 200
    # production and old have the same planted rates before the deployment: small distortion
    assert 1.0 <= meta["fidelity_median_error"].value < 2.0
    with duckdb.connect(str(config.warehouse_path()), read_only=True) as conn:
        prod = conn.execute(
            "SELECT dates, fidelity_error FROM candidate_comparison WHERE candidate = 'production'"
        ).df()
    assert set(prod["dates"]) == {",".join(DAYS)}  # the deployed day is not pooled
    assert prod["fidelity_error"].notna().all()


@pytest.mark.slow  # materializes the graph (module fixture)
def test_report_is_one_self_contained_html(warehouse_home, capsys):
    out = warehouse_home["home"] / "out" / "report.html"
    assert main(["report", "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["report"] == str(out)
    text = out.read_text(encoding="utf-8")
    # self-contained: no external fetch of any kind
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", text)
    images = _pngs(text)
    assert len(images) == 5  # day by day, forest, two funnels, predicted vs realised
    assert "<h2>Day by day</h2>" in text
    for image in images:
        assert image.width >= 300 and image.height >= 200
    assert "new</b> vs old" in text and "less often" in text and "fabricated facts" in text
    assert "Forecast check for <b>new</b>" in text
    assert "tax1" in text and "prompt1" in text and "judge-x" in text
    assert not (out.parent / ".report.html.tmp").exists()


@pytest.mark.slow  # materializes the graph (module fixture)
def test_compare_cli_new_fields_and_filters(warehouse_home, capsys):
    assert main(["compare", "--json", "--candidates", "new", "--from", "2026-11-02", "--bh"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dates"] == ["2026-11-02", "2026-11-03"]
    assert {r["candidate"] for r in report["rows"]} == {"new"}
    assert report["multiple_testing"] == "bh"
    for row in report["rows"]:
        for field in ("ci_low_ratio", "ci_high_ratio", "p_mcnemar", "q_value", "n_paired"):
            assert field in row
        assert row["n_paired"] == 2 * N
    assert main(["compare", "--candidates", "nobody"]) == 2
    assert "no judge_grades for nobody" in capsys.readouterr().err
