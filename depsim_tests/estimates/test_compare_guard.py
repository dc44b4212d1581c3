"""`depsim compare` refuses a partition whose blocking checks failed, marks it when asked, and
every output says when the numbers are not a measurement.

One day of traffic that is NOT the demo log (written elsewhere and brought in with `depsim
ingest`, as real logs are), on the Dagster instance the CLI reads. The baseline is graded by
the simulator's sim-judge; the candidate by a second simulator that returns malformed verdicts
every time (so every reply is unscored and judge_grades_unscored_share fails, as the real
judge did on the llama-cpp-python server of issue 12). Later tests grade both arms with a
judge that is not sim-judge (a proxy naming the model differently).
"""

import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import duckdb
import pandas as pd
import pytest

from depsim_assets import cli, config, runs
from depsim_assets.definitions import ASSETS, build_resources, defs
from depsim_assets.endpoints import display_endpoint
from depsim_assets.estimates.guard import BlockingCheck, blocking_checks, guard_comparison
from depsim_assets.measurement import SIM_JUDGE_WARNING, assess
from depsim_assets.partitions import candidate_by_date, multi_key, partitioned_asset_check
from depsim_assets.registry import Candidate, Registry, save_registry
from depsim_assets.sim import SimServer
from depsim_assets.sim.faults import FaultPlan
from depsim_assets.traffic.ingest import ingest_files
from depsim_demo.synth import write_demo_log

DAY = "2026-11-02"
BASE, CAND = "sim-production", "sim-candidate-regressed"
SAMPLE, PER_DAY = 30, 60
FAILED = f"{CAND}|{DAY}"
JUDGE_ENV = ("DEPSIM_JUDGE_BASE_URL", "DEPSIM_JUDGE_MODEL", "DEPSIM_MAX_UNSCORED_SHARE")


def _materialize(instance, selection, key=None, run_config=None):
    return dg.materialize(
        ASSETS,
        selection=list(selection),
        partition_key=key,
        instance=instance,
        resources=build_resources(),  # the judge from the environment as it is now
        run_config=run_config,
        raise_on_error=False,
    )


def _grade(instance, name):
    return _materialize(instance, runs.CANDIDATE_ASSETS, str(multi_key(name, DAY)))


def _metadata(result, asset):
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.path == [asset]]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def _cli(capsys, *args):
    code = cli.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


class _RenamingProxy(BaseHTTPRequestHandler):
    """Forwards chat requests to the simulator, calling model ``proxy-judge`` sim-judge: a
    judge endpoint depsim knows only by another name (as any real server would be)."""

    upstream = ""

    def do_POST(self):  # noqa: N802 - the http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        body["model"] = "sim-judge" if body.get("model") == "proxy-judge" else body.get("model")
        request = urllib.request.Request(
            self.upstream + "/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, payload = response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            status, payload = exc.code, json.loads(exc.read())
        if isinstance(payload.get("model"), str):
            payload["model"] = "proxy-judge"
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    """Real (non-demo) traffic; the baseline graded by sim-judge, the candidate by a judge
    whose every verdict is malformed; on the instance under $DAGSTER_HOME."""
    home = tmp_path_factory.mktemp("guard-home")
    raw = tmp_path_factory.mktemp("raw-log")
    with (
        pytest.MonkeyPatch.context() as mp,
        SimServer(faults=FaultPlan.parse("malformed=1")) as broken,
    ):
        mp.setenv("DEPSIM_HOME", str(home))
        mp.setenv("DAGSTER_HOME", str(home / "dagster"))
        for name in ("DEPSIM_WAREHOUSE", "DEPSIM_MIN_SAMPLE", *JUDGE_ENV):
            mp.delenv(name, raising=False)
        # Conversations from a file outside depsim's log, ingested: no demo marker.
        (path,) = write_demo_log(raw, [DAY], per_day=PER_DAY, seed=12).values()
        ingest_files([path], date=DAY)
        save_registry(
            Registry(
                baseline=BASE,
                candidates=[Candidate(name=n, base_url="sim", model=n) for n in (BASE, CAND)],
            )
        )
        instance = cli._instance()  # the CLI's own instance: compare reads its checks
        runs.ensure_candidate_partitions(instance, [BASE, CAND])
        config_ = {"ops": {"sampled_conversations": {"config": {"sample_size": SAMPLE}}}}
        assert _materialize(instance, runs.TRAFFIC_ASSETS, DAY, config_).success
        base = _grade(instance, BASE)
        assert base.success
        mp.setenv("DEPSIM_JUDGE_BASE_URL", broken.base_url)
        cand = _grade(instance, CAND)
        mp.delenv("DEPSIM_JUDGE_BASE_URL")
        yield {
            "instance": instance,
            "mp": mp,
            "base": base,
            "cand": cand,
            "broken": broken.base_url,
        }


@pytest.mark.e2e
def test_the_candidate_partition_really_failed(graph):
    result = graph["cand"]
    assert not result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not checks["judge_grades_unscored_share"].passed
    with duckdb.connect(str(config.warehouse_path()), read_only=True) as conn:
        rows = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE status = 'scored'), any_value(judge_endpoint)"
            " FROM judge_grades WHERE candidate = ?",
            [CAND],
        ).fetchone()
    assert rows[0] == SAMPLE * 20 and rows[1] == 0
    assert rows[2] == display_endpoint(graph["broken"])  # graded (badly) where the env said


@pytest.mark.e2e
def test_compare_refuses_a_partition_whose_checks_failed(graph, capsys):
    code, out, err = _cli(capsys, "compare", "--json")
    assert code == 2 and out == ""
    line = err.strip()
    assert "\n" not in line and line.startswith("depsim: error: 1 compared partition")
    assert FAILED in line and "judge_grades_unscored_share failed" in line
    assert "--allow-failed" in line
    assert f"{BASE}|{DAY}" not in line  # the healthy baseline is not blamed
    code, _, err = _cli(capsys, "report")
    assert code == 2 and FAILED in err and "--allow-failed" in err


@pytest.mark.e2e
def test_allow_failed_compares_with_loud_warnings(graph, capsys):
    code, out, _ = _cli(capsys, "compare", "--json", "--allow-failed")
    assert code == 0
    report = json.loads(out)
    assert report["measurement"] is False
    assert report["traffic"] == "real"
    assert report["warning"].startswith(SIM_JUDGE_WARNING)
    (failed,) = report["failed_partitions"]
    assert failed["partition"] == FAILED
    reasons = " | ".join(failed["reasons"])
    assert "check judge_grades_unscored_share failed: 30 of 30 replies unscored" in reasons
    assert "no reply graded: all 30 unscored" in reasons
    assert report["warnings"] == [f"{FAILED}: {'; '.join(failed['reasons'])}"]
    assert {r["n_graded"] for r in report["rows"] if r["candidate"] == CAND} == {0}

    code, out, _ = _cli(capsys, "compare", "--allow-failed")
    lines = out.splitlines()
    assert code == 0
    # said before the table and again after it
    assert lines[0] == f"!! NOT A MEASUREMENT: {report['warning']}"
    assert lines[1].startswith(f"!! FAILED PARTITION INCLUDED (--allow-failed): {FAILED}: ")
    assert lines[-2:] == lines[:2]


@pytest.mark.e2e
def test_report_banner(graph, capsys, tmp_path):
    out = tmp_path / "r.html"
    code, _, _ = _cli(capsys, "report", "--allow-failed", "--out", str(out))
    assert code == 0
    page = out.read_text()
    assert "id='not-a-measurement'" in page and SIM_JUDGE_WARNING in page
    assert "id='failed-partitions'" in page and FAILED in page
    # the banners come before any result
    assert page.index("not-a-measurement") < page.index("What changed")


@pytest.mark.e2e
def test_metadata_says_it(graph):
    instance = graph["instance"]
    grades = _metadata(graph["base"], "judge_grades")
    rates = _metadata(graph["base"], "behavior_rates")
    for meta in (grades, rates):
        assert meta["measurement"] is False
        assert meta["warning"].startswith(SIM_JUDGE_WARNING)
    comparison = _materialize(instance, ["candidate_comparison"])
    meta = _metadata(comparison, "candidate_comparison")
    assert meta["measurement"] is False and meta["warning"].startswith(SIM_JUDGE_WARNING)
    assert meta["failed_partitions"] == 1
    (warning,) = meta["warnings"]
    assert warning.startswith(f"{FAILED}: check judge_grades_unscored_share failed")


@pytest.mark.e2e
def test_the_grade_rows_alone_catch_it_without_the_instance(graph):
    _, frame, _ = cli._comparison_frame(baseline=None, alpha=0.1, allow_failed=True)
    with duckdb.connect(str(config.warehouse_path()), read_only=True) as conn:
        guard = guard_comparison(frame, conn, instance=None)
    (issue,) = guard.issues
    assert issue.key == FAILED and issue.reasons[0].startswith("no reply graded")
    assert set(guard.partitions) == {(BASE, DAY), (CAND, DAY)}


@pytest.mark.e2e
def test_a_real_judge_on_real_traffic_is_a_measurement(graph, capsys):
    """Regraded by a judge that is not sim-judge: the failure is gone (the latest check
    passed) and nothing says "not a measurement"."""
    instance, mp = graph["instance"], graph["mp"]
    upstream = SimServer().start()
    _RenamingProxy.upstream = upstream.base_url
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), _RenamingProxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        mp.setenv("DEPSIM_JUDGE_BASE_URL", f"http://127.0.0.1:{proxy.server_address[1]}/v1")
        mp.setenv("DEPSIM_JUDGE_MODEL", "proxy-judge")
        results = [_grade(instance, name) for name in (BASE, CAND)]
        assert all(r.success for r in results)
        rates = _metadata(results[1], "behavior_rates")
        assert rates["measurement"] is True and "warning" not in rates
        code, out, err = _cli(capsys, "compare", "--json")
        assert code == 0, err
        report = json.loads(out)
        assert report["measurement"] is True and report["warning"] is None
        assert report["judge_models"] == ["proxy-judge"]
        assert report["warnings"] == [] and report["failed_partitions"] == []
        code, out, _ = _cli(capsys, "compare")
        assert code == 0 and "!!" not in out
        meta = _metadata(_materialize(instance, ["candidate_comparison"]), "candidate_comparison")
        assert meta["measurement"] is True and "warning" not in meta
        assert meta["failed_partitions"] == 0
    finally:
        proxy.shutdown()
        upstream.stop()
        mp.delenv("DEPSIM_JUDGE_MODEL")
        mp.delenv("DEPSIM_JUDGE_BASE_URL")


def test_wording_by_judge_and_traffic(tmp_path):
    """The sentence each combination gets (the demo marker is what write_demo_log leaves)."""
    write_demo_log(tmp_path, ["2026-11-01"], per_day=5)
    (tmp_path / "2026-11-02").mkdir()
    (tmp_path / "2026-11-02" / "part-00000.jsonl").write_text("{}\n")
    demo = assess(["sim-judge"], ["2026-11-01"], tmp_path)
    assert not demo.measurement and demo.traffic == "synthetic"
    assert demo.warning.startswith("a demo of the pipeline on depsim's synthetic demo log")
    assert "planted truth" in demo.warning and "sim-judge" in demo.warning
    real = assess(["sim-judge"], ["2026-11-02"], tmp_path)
    assert not real.measurement and real.warning.startswith(SIM_JUDGE_WARNING)
    assert assess(["gpt-judge"], ["2026-11-02"], tmp_path).as_dict() == {
        "measurement": True,
        "warning": None,
        "traffic": "real",
        "judge_models": ["gpt-judge"],
    }
    assert (
        "not a measurement of a real model"
        in assess(["gpt-judge"], ["2026-11-01"], tmp_path).warning
    )
    # real conversations added to a demo day: no longer "the demo", and said so
    (tmp_path / "2026-11-01" / "ingested.jsonl").write_text("{}\n")
    mixed = assess(["gpt-judge"], ["2026-11-01"], tmp_path)
    assert not mixed.measurement and mixed.traffic == "mixed"
    assert "mix a demo with real conversations" in mixed.warning


def _check(asset: str, name: str) -> dg.AssetCheckKey:
    return dg.AssetCheckKey(dg.AssetKey(asset), name)


def test_the_blocking_checks_are_read_from_the_definitions(depsim_home):
    """Every partitioned blocking check of the code location, whichever stage declares it;
    the unpartitioned comparison check is not a partition's (it has none)."""
    found = blocking_checks(defs)
    assert found == blocking_checks(defs.get_repository_def()) == blocking_checks(ASSETS)
    # what the comparison asset is handed: the code location's blocking_checks resource
    assert build_resources()["blocking_checks"] == found
    assert found == [  # in flow order: a refusal names the earliest failure first
        BlockingCheck(_check("sampled_conversations", "no_residual_pii"), False),
        BlockingCheck(_check("sampled_conversations", "sampled_conversations_min_size"), False),
        BlockingCheck(_check("candidate_completions", "candidate_completions_complete"), True),
        BlockingCheck(_check("candidate_completions", "candidate_completions_error_share"), True),
        BlockingCheck(_check("judge_grades", "judge_grades_unscored_share"), True),
        BlockingCheck(_check("judge_grades", "judge_grades_single_version"), True),
    ]


def test_a_new_blocking_check_is_guarded_without_a_line_in_the_guard():
    def _passes(context) -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=True)

    new = partitioned_asset_check(
        asset="behavior_rates", name="rates_new", partitions_def=candidate_by_date, blocking=True
    )(_passes)
    quiet = partitioned_asset_check(
        asset="behavior_rates", name="rates_quiet", partitions_def=candidate_by_date
    )(_passes)
    grown = dg.Definitions.merge(defs, dg.Definitions(asset_checks=[new, quiet]))
    keys = {c.key for c in blocking_checks(grown)}
    assert _check("behavior_rates", "rates_new") in keys
    assert _check("behavior_rates", "rates_quiet") not in keys  # not blocking: not a refusal


def test_an_instance_without_definitions_is_refused(instance):
    """Which checks to read must be said: a guard that read none would pass a failed one."""
    with duckdb.connect() as conn, pytest.raises(ValueError, match="needs checks="):
        guard_comparison(pd.DataFrame(), conn, instance=instance)
