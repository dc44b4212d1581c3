"""YAML from users: an alias bomb, duplicate keys, depth and size are refused in one line, fast.

The bomb is the classic "billion laughs": nine lists of nine references, 12 lines, 9**9
(387 million) strings once expanded. Before the strict loader it hung the code location
for minutes and took gigabytes; now every reader refuses it after its first line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import dagster as dg
import pytest

from depsim_assets import config, safe_yaml
from depsim_assets.automation import candidate_registry_sensor, new_day_sensor
from depsim_assets.cli import main
from depsim_assets.registry import (
    RegistryError,
    generation_code_version,
    load_registry,
    parse_registry,
)
from depsim_assets.resources import CandidateRegistry


def alias_bomb(levels: int = 9) -> str:
    """The lol-laughs file: each level is a list of nine aliases of the level before."""
    lines = ["# candidates", "baseline: a", 'a: &a ["lol","lol","lol","lol","lol","lol","lol",'
             '"lol","lol"]']
    names = "abcdefghijklmnop"
    for level in range(1, levels):
        prev, cur = names[level - 1], names[level]
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    lines.append(f"candidates: *{names[levels - 1]}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def bomb_home(depsim_home):
    path = config.registry_path()
    path.write_text(alias_bomb())
    return path


def test_the_bomb_is_twelve_lines_of_nested_aliases():
    text = alias_bomb()
    assert len(text.splitlines()) == 12
    assert text.count("*") == 8 * 9 + 1


def test_alias_bomb_is_refused_in_one_line_naming_file_and_line(bomb_home):
    started = time.perf_counter()
    with pytest.raises(RegistryError) as refused:
        load_registry(bomb_home)
    elapsed = time.perf_counter() - started
    message = str(refused.value)
    assert message == f"{bomb_home}: line 3: YAML anchors (&name) are not allowed in depsim files"
    assert elapsed < 1.0


def test_an_alias_without_anchor_and_a_merge_key_are_refused():
    with pytest.raises(safe_yaml.YamlError, match=r"^f\.yaml: line 2: .*aliases"):
        safe_yaml.loads("a: 1\nb: *a\n", where="f.yaml")
    with pytest.raises(safe_yaml.YamlError, match=r"line 2: .*merge keys"):
        safe_yaml.loads("a: 1\n<<: {b: 2}\n", where="f.yaml")


def test_duplicate_keys_name_both_lines():
    text = "baseline: a\ncandidates:\n  - name: a\n    base_url: sim\n    model: m\n    model: n\n"
    with pytest.raises(RegistryError) as refused:
        parse_registry(text, where="candidates.yaml")
    assert str(refused.value) == (
        "candidates.yaml: line 6: duplicate key 'model' (first at line 5)"
    )
    with pytest.raises(safe_yaml.YamlError, match="line 2: duplicate key 'baseline'"):
        safe_yaml.loads("baseline: a\nbaseline: b\n")


def test_depth_and_size_are_bounded():
    deep = "[" * 5000 + "]" * 5000
    started = time.perf_counter()
    with pytest.raises(safe_yaml.YamlError, match="nested deeper than 64 levels"):
        safe_yaml.loads(deep, where="deep.yaml")
    assert time.perf_counter() - started < 1.0
    with pytest.raises(safe_yaml.YamlError, match="larger than 1024 KB"):
        safe_yaml.loads("a: " + "x" * (safe_yaml.MAX_BYTES + 1), where="big.yaml")


def test_ordinary_yaml_still_loads():
    assert safe_yaml.loads("a: 1\nb: [x, {c: true}]\nd: 0.5\n") == {
        "a": 1, "b": ["x", {"c": True}], "d": 0.5
    }
    assert safe_yaml.loads("") is None


def test_candidates_list_refuses_the_bomb_in_under_a_second(bomb_home, capsys):
    started = time.perf_counter()
    assert main(["candidates", "list"]) == 2
    elapsed = time.perf_counter() - started
    err = capsys.readouterr().err.strip()
    assert err == (
        f"depsim: error: {bomb_home}: line 3: YAML anchors (&name) are not allowed in depsim files"
    )
    assert elapsed < 1.0
    # Adding to a refused file leaves it as it was.
    assert main(["candidates", "add", "x", "--base-url", "sim"]) == 2
    assert bomb_home.read_text() == alias_bomb()


@pytest.mark.slow  # a process of depsim's own
def test_candidates_list_process_ends_with_the_reason(bomb_home):
    # A whole process, as a user runs it: exits 2 with the line (no hang, no traceback). The
    # bound is a safety net against a hang; the claim is the in-process timing above.
    done = subprocess.run(
        [sys.executable, "-m", "depsim_assets.cli", "candidates", "list"],
        capture_output=True, text=True, timeout=60, env=os.environ.copy(),
    )
    assert done.returncode == 2
    assert done.stderr.strip().endswith("YAML anchors (&name) are not allowed in depsim files")
    assert "Traceback" not in done.stderr


def test_sensor_ticks_fail_with_the_reason_at_once(bomb_home):
    registry = CandidateRegistry(path=str(bomb_home))
    for sensor in (candidate_registry_sensor, new_day_sensor):
        with dg.instance_for_test() as instance:
            if sensor is new_day_sensor:  # it reads the registry only when a day arrived
                instance.report_runless_asset_event(
                    dg.AssetMaterialization("conversation_prefixes", partition="2026-11-18")
                )
            context = dg.build_sensor_context(instance=instance, resources={"registry": registry})
            started = time.perf_counter()
            with pytest.raises(RegistryError, match="line 3: YAML anchors"):
                sensor(context)
            assert time.perf_counter() - started < 1.0


@pytest.mark.slow  # a process of depsim's own
def test_code_location_loads_with_the_bomb_in_place(bomb_home):
    # The code version read when definitions load marks the registry invalid, without expanding.
    started = time.perf_counter()
    assert generation_code_version(bomb_home) == "gen-invalid"
    assert time.perf_counter() - started < 1.0
    done = subprocess.run(
        [sys.executable, "-c", "import depsim_assets.definitions as d; print(len(d.defs.assets))"],
        capture_output=True, text=True, timeout=120, env=os.environ.copy(),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.strip().splitlines()[-1]) > 5
