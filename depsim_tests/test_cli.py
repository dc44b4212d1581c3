"""The command line: JSON shapes a script can rely on, and one-line errors."""

import json

import pytest

from depsim_assets import config
from depsim_assets.cli import main

ROW_FIELDS = {
    "candidate",
    "category",
    "n_graded",
    "n_flagged",
    "rate_per_100k",
    "ci_low_per_100k",
    "ci_high_per_100k",
    "baseline_n_graded",
    "baseline_n_flagged",
    "rate_ratio",
    "p_value",
    "significant",
    "change",
}


@pytest.mark.e2e
def test_demo_then_compare_json(depsim_home, capsys):
    args = ["--days", "2", "--per-day", "120", "--sample-size", "40", "--no-progress"]
    assert main(["demo", *args, "--json"]) == 0
    demo_out = json.loads(capsys.readouterr().out)
    assert main(["compare", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == demo_out
    assert report["baseline"] == "sim-production"
    assert report["dates"] == ["2026-11-02", "2026-11-03"]
    assert {r["candidate"] for r in report["rows"]} == {
        "production",
        "sim-candidate-safer",
        "sim-candidate-regressed",
    }
    assert len(report["rows"]) == 3 * 20
    for row in report["rows"]:
        assert ROW_FIELDS <= set(row)
        assert row["change"] in {"up", "down", "none"}
        assert row["n_graded"] == 80
    assert (config.reports_dir() / "comparison.md").exists()
    spend = report["candidates"]
    assert set(spend) == {"sim-production", "production", "sim-candidate-safer",
                          "sim-candidate-regressed"}
    for name, row in spend.items():
        assert row["replies"] == 80
        assert set(row) == {"replies", "tokens_in", "tokens_out", "cost_usd"}
        # the production arm is the logged replies: no call, no tokens
        assert (row["tokens_in"] > 0 and row["tokens_out"] > 0) == (name != "production")


def test_compare_without_a_warehouse_is_one_line(depsim_home, capsys):
    (depsim_home / "candidates.yaml").write_text(
        "baseline: a\ncandidates:\n  - {name: a, base_url: sim, model: sim-production}\n"
    )
    assert main(["compare"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("depsim: error:") and "no warehouse" in err
    assert "\n" not in err


def test_candidates_add_and_list(depsim_home, capsys):
    assert (
        main(
            [
                "candidates",
                "add",
                "my-model_v1.2",
                "--base-url",
                "http://127.0.0.1:9/v1",
                "--api-key-env",
                "MY_KEY",
                "--param",
                "temperature=0.2",
                "--baseline",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["candidates", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["baseline"] == "my-model_v1.2"
    assert listed["candidates"][0]["params"] == {"temperature": 0.2}


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["candidates", "add", "bad name", "--base-url", "sim"], "not a valid candidate name"),
        (
            ["candidates", "add", "x", "--base-url", "sim", "--api-key-env", "sk-abc123def456"],
            "NAME of an environment variable",
        ),
        (["candidates", "list"], "no candidate registry"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(depsim_home, capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err
    assert "sk-abc123def456" not in err
    assert not (depsim_home / "candidates.yaml").exists()


def test_malformed_registry_keeps_the_file(depsim_home, capsys):
    path = depsim_home / "candidates.yaml"
    path.write_text("candidates: [oops\n")
    assert main(["candidates", "add", "x", "--base-url", "sim"]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert path.read_text() == "candidates: [oops\n"
