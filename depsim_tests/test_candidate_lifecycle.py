"""Retiring a candidate from the CLI, and the replay code version that follows the registry."""

import json

import yaml

from depsim_assets import config
from depsim_assets.cli import main
from depsim_assets.registry import (
    Candidate,
    Registry,
    generation_code_version,
    generation_fingerprint,
    load_registry,
    save_registry,
)
from depsim_assets.replay.assets import candidate_completions


def _register(*entries: Candidate, baseline: str = "base") -> None:
    save_registry(Registry(baseline=baseline, candidates=list(entries)))


def _cand(name: str, **fields) -> Candidate:
    return Candidate(name=name, base_url="sim", model="sim-production", **fields)


def test_retire_marks_the_entry_and_keeps_it(depsim_home, capsys):
    _register(_cand("base"), _cand("old", deployed_on=["2026-11-01"]))
    assert main(["candidates", "retire", "old", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "candidate": "old",
        "state": "retired",
        "changed": True,
    }
    raw = yaml.safe_load(config.registry_path().read_text())
    entry = next(c for c in raw["candidates"] if c["name"] == "old")
    assert entry["retired"] is True and entry["deployed_on"] == ["2026-11-01"]
    registry = load_registry()
    assert registry.names() == ["base"] and registry.retired_names() == ["old"]
    assert registry.get("old").deployed_on == ["2026-11-01"]  # forecast validation reads it

    assert main(["candidates", "retire", "old"]) == 0
    assert "already retired; nothing changed" in capsys.readouterr().out
    assert main(["candidates", "list"]) == 0
    assert "old (retired)" in capsys.readouterr().out

    assert main(["candidates", "retire", "old", "--undo"]) == 0
    assert "active again" in capsys.readouterr().out
    assert load_registry().names() == ["base", "old"]


def test_retire_refuses_the_baseline_and_unknown_names(depsim_home, capsys):
    _register(_cand("base"), _cand("other"))
    before = config.registry_path().read_text()
    assert main(["candidates", "retire", "base"]) == 2
    err = capsys.readouterr().err
    assert "is the baseline" in err and "\n" not in err.strip()
    assert main(["candidates", "retire", "nobody"]) == 2
    assert "unknown candidate 'nobody'" in capsys.readouterr().err
    assert config.registry_path().read_text() == before


def test_adding_a_retired_candidate_again_makes_it_active(depsim_home, capsys):
    _register(_cand("base"), _cand("old", retired=True))
    args = ["candidates", "add", "old", "--base-url", "sim", "--model", "sim-production"]
    assert main(args) == 0
    assert load_registry().names() == ["base", "old"]


def test_generation_settings_change_the_replay_code_version(depsim_home):
    path = config.registry_path()
    assert generation_code_version(path) == "gen-none"
    _register(_cand("base"), _cand("c", params={"temperature": 0.2}))
    first = generation_code_version(path)
    assert first.startswith("gen-") and first not in ("gen-none", "gen-invalid")

    _register(_cand("base"), _cand("c", params={"temperature": 0.7}))
    changed = generation_code_version(path)
    assert changed != first

    for field, value in [("model", "sim-candidate-safer"), ("samples", 2), ("base_url", "x")]:
        other = _cand("c", params={"temperature": 0.7}).model_copy(update={field: value})
        assert generation_fingerprint([_cand("base"), other]) != changed.removeprefix("gen-")

    # Prices, concurrency and retirement do not change a reply: same version.
    _register(
        _cand("base"),
        _cand("c", params={"temperature": 0.7}, price_in_per_mtok=3.0, max_concurrency=2),
    )
    assert generation_code_version(path) == changed

    path.write_text("candidates: [\n")
    assert generation_code_version(path) == "gen-invalid"


def test_candidate_completions_carries_the_generation_version():
    version = candidate_completions.code_versions_by_key[candidate_completions.key]
    assert version is not None and version.startswith("replay-v1.gen-")
