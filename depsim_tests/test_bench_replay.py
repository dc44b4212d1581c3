"""The replay benchmark's cheap parts: absolute paths, the run order, median and spread, the
JSON it prints; and the shard arithmetic (the pool itself in the slow tier: it starts
processes)."""

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from depsim_assets.models.shards import ShardPool, slices, split_evenly

REPO = Path(__file__).resolve().parents[1]


def _load_bench():
    spec = importlib.util.spec_from_file_location(
        "replay_throughput", REPO / "benchmarks" / "replay_throughput.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


def test_defaults_are_absolute_and_the_issues_point(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = bench.parse_args([])
    # The old default was relative, and broke once the subprocess ran in a temp folder.
    assert args.inspect_venv.is_absolute()
    assert args.inspect_venv == Path.home() / ".cache" / "depsim" / "bench-venv-inspect"
    assert (args.concurrency, args.latency_ms, args.runs) == (256, 1000, 3)


def test_a_relative_venv_is_made_absolute_against_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = bench.parse_args(["--inspect-venv", "venvs/inspect"])
    assert args.inspect_venv == tmp_path.resolve() / "venvs" / "inspect"


@pytest.mark.parametrize("flag", ["--runs", "--n", "--concurrency", "--workers"])
def test_counts_below_one_are_refused_in_one_line(flag, capsys):
    with pytest.raises(SystemExit) as exit_:
        bench.parse_args([flag, "0"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"{flag} must be at least 1" in err
    assert "Traceback" not in err


def test_median_and_spread():
    assert bench.summarize([12.0, 10.0, 30.0]) == {
        "median_s": 12.0, "min_s": 10.0, "max_s": 30.0, "runs_s": [12.0, 10.0, 30.0]}
    # An even count (a failed run dropped): the mean of the middle two.
    assert bench.summarize([4.0, 1.0, 2.0, 10.0])["median_s"] == 3.0
    assert bench.summarize([])["median_s"] is None


def test_ratios_are_of_medians():
    systems = {"depsim": bench.summarize([11.0, 12.0, 40.0]),
               "inspect": bench.summarize([100.0, 60.0, 50.0])}
    got = bench.ratios(systems, ideal_s=10.0)
    # One slow depsim run moves the max, not the median.
    assert got["depsim_over_ideal"] == 1.2
    assert got["depsim_over_inspect"] == 0.2
    assert got["inspect_over_ideal"] == 6.0
    assert "inspect_over_inspect" not in got
    # Inspect left out or failed: no ratio against it, rather than a made-up one.
    assert "depsim_over_inspect" not in bench.ratios({"depsim": systems["depsim"]}, 10.0)
    failed = {"depsim": systems["depsim"], "inspect": bench.summarize([])}
    assert bench.ratios(failed, 10.0)["depsim_over_inspect"] is None


def test_runs_are_interleaved_with_a_rotating_order():
    systems = [("stored", "depsim"), ("stored", "inspect"), ("in_process", "reference")]
    order = bench.interleaved(systems, 3)
    assert len(order) == 9
    rounds = [order[i:i + 3] for i in range(0, 9, 3)]
    assert all(sorted(r) == sorted(systems) for r in rounds)  # each system once a round
    assert [r[0] for r in rounds] == systems  # a different system first in each round


def test_the_json_shape():
    args = argparse.Namespace(n=1280, concurrency=256, latency_ms=1000.0, runs=2, workers=2)
    results = {
        ("stored", "depsim"): [bench.Run(20.0, 1280), bench.Run(22.0, 1280)],
        ("stored", "inspect"): [bench.Run(80.0, 1280), bench.Run(90.0, 1280)],
        ("in_process", "depsim"): [bench.Run(6.0, 1280), bench.Run(7.0, 1279)],
    }
    out = json.loads(json.dumps(bench.report(
        args, results, ["in_process/depsim: 1279 of 1280 answers ok"],
        {"load_avg": {"start": [1.0, 1.0, 1.0]}})))
    assert out["ideal_s"] == 5.0  # 1280 x 1 s / 256
    assert out["stored"]["depsim"]["median_s"] == 21.0
    assert out["stored"]["inspect"]["min_s"] == 80.0
    assert out["stored"]["depsim"]["ok"] == [1280, 1280]
    assert out["stored_ratios"]["depsim_over_inspect"] == 0.247
    assert out["in_process_ratios"]["depsim_over_ideal"] == 1.3
    assert out["errors"] == ["in_process/depsim: 1279 of 1280 answers ok"]
    assert out["load_avg"]["start"] == [1.0, 1.0, 1.0]


def test_child_programs_are_valid_python():
    compile(bench.DEPSIM_CHILD.format(name="bench", day="2026-11-01"), "<depsim>", "exec")
    compile(bench.INSPECT_IN_PROCESS, "<inspect>", "exec")
    compile(bench.INSPECT_TASK, "<task>", "exec")


def test_concurrency_and_requests_split_evenly():
    assert split_evenly(256, 3) == [86, 85, 85]
    assert split_evenly(2, 4) == [1, 1, 0, 0]
    parts = slices(10, 3)
    assert [list(p) for p in parts] == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    with pytest.raises(ValueError):
        split_evenly(10, 0)


def _echo_shard(items: list[int], concurrency: int) -> list[tuple[int, int]]:
    return [(item, concurrency) for item in items]


@pytest.mark.slow  # starts worker processes
def test_shard_pool_keeps_order_and_splits_the_cap():
    with ShardPool(3) as pool:
        pool.warm()
        got = pool.map(_echo_shard, list(range(10)), concurrency=256)
        few = pool.map(_echo_shard, [7], concurrency=256)
    assert [item for item, _ in got] == list(range(10))
    assert sorted({c for _, c in got}) == [85, 86]  # 256 in flight in total, not 3 x 256
    assert few == [(7, 256)]  # one item: one shard with the whole cap
