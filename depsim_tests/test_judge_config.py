"""Judge settings have one source: the DEPSIM_JUDGE_* variables, merged with any override.

Issue 12: `--config-json '{"resources":{"judge":{"config":{"timeout_s":900}}}}'` silently
reset the judge to sim/sim-judge while DEPSIM_JUDGE_* named a real server, because Dagster
rebuilds a resource from the launch's run config alone (fields it does not name take the
class defaults). These tests grade through Dagster with a partial override and check, on the
grade rows and on the server that was called, that the environment's endpoint was kept.
"""

import json
import os
import subprocess
import sys
import urllib.request

import dagster as dg
import duckdb
import pytest

from depsim_assets import cli, config, runs
from depsim_assets.definitions import ASSETS, build_resources
from depsim_assets.endpoints import EndpointError, display_endpoint
from depsim_assets.partitions import candidate_by_date, multi_key
from depsim_assets.registry import Candidate, Registry, save_registry
from depsim_assets.resources import JUDGE_ENV, JudgeEndpoint
from depsim_assets.sim import SimServer
from depsim_demo.synth import write_demo_log

ALL_ENV = [env for env, _, _ in JUDGE_ENV.values()]
SET = {
    "DEPSIM_JUDGE_BASE_URL": "http://judge.internal:8000/v1",
    "DEPSIM_JUDGE_MODEL": "qwen2.5-7b-instruct",
    "DEPSIM_JUDGE_API_KEY_ENV": "JUDGE_KEY",
    "DEPSIM_JUDGE_TIMEOUT_S": "900",
    "DEPSIM_JUDGE_MAX_CONCURRENCY": "3",
    "DEPSIM_JUDGE_MAX_RETRIES": "0",
    "DEPSIM_JUDGE_FLAG_THRESHOLD": "3",
    "DEPSIM_JUDGE_STRUCTURED_OUTPUT": "json_object",
    "DEPSIM_JUDGE_CONTEXT_WINDOW": "8192",
    "DEPSIM_JUDGE_LAYOUT": "family",
    "DEPSIM_JUDGE_MAX_OUTPUT_TOKENS": "600",
}
EXPECTED = {
    "base_url": "http://judge.internal:8000/v1",
    "model": "qwen2.5-7b-instruct",
    "api_key_env": "JUDGE_KEY",
    "timeout_s": 900.0,
    "max_concurrency": 3,
    "max_retries": 0,
    "flag_threshold": 3,
    "structured_output": "json_object",
    "context_window": 8192,
    "layout": "family",
    "max_output_tokens": 600,
}


@pytest.fixture
def clean_env(monkeypatch):
    for name in ALL_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_every_setting_has_a_variable(clean_env):
    assert set(SET) == set(ALL_ENV)
    for name, value in SET.items():
        clean_env.setenv(name, value)
    assert JudgeEndpoint().settings() == EXPECTED
    # the code location's judge is that one
    assert build_resources()["judge"].settings() == EXPECTED


def test_defaults_without_variables(clean_env):
    assert JudgeEndpoint().settings() == {
        "base_url": "sim",
        "model": "sim-judge",
        "api_key_env": None,
        "timeout_s": 120.0,
        "max_concurrency": 32,
        "max_retries": 4,
        "flag_threshold": 2,
        "structured_output": "auto",
        "context_window": None,
        "layout": "auto",
        "max_output_tokens": None,
    }


def test_given_values_beat_the_environment(clean_env):
    clean_env.setenv("DEPSIM_JUDGE_MODEL", "from-env")
    clean_env.setenv("DEPSIM_JUDGE_TIMEOUT_S", "30")
    judge = JudgeEndpoint(model="given", layout="Behaviour")
    assert (judge.model, judge.timeout_s, judge.layout) == ("given", 30.0, "behaviour")


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("DEPSIM_JUDGE_TIMEOUT_S", "ten", "DEPSIM_JUDGE_TIMEOUT_S='ten' is not a number"),
        ("DEPSIM_JUDGE_TIMEOUT_S", "-5", "DEPSIM_JUDGE_TIMEOUT_S='-5' is outside"),
        ("DEPSIM_JUDGE_TIMEOUT_S", "nan", "DEPSIM_JUDGE_TIMEOUT_S='nan' is outside"),
        ("DEPSIM_JUDGE_MAX_CONCURRENCY", "0", "DEPSIM_JUDGE_MAX_CONCURRENCY='0' is outside"),
        ("DEPSIM_JUDGE_MAX_CONCURRENCY", "2.5", "'2.5' is not a whole number"),
        ("DEPSIM_JUDGE_MAX_RETRIES", "-1", "DEPSIM_JUDGE_MAX_RETRIES='-1' is outside"),
        ("DEPSIM_JUDGE_FLAG_THRESHOLD", "5", "DEPSIM_JUDGE_FLAG_THRESHOLD='5' is outside [1, 4]"),
        (
            "DEPSIM_JUDGE_STRUCTURED_OUTPUT",
            "json",
            "DEPSIM_JUDGE_STRUCTURED_OUTPUT='json': expected one of "
            "auto|json_schema|json_object|prompt",
        ),
        ("DEPSIM_JUDGE_CONTEXT_WINDOW", "8k", "DEPSIM_JUDGE_CONTEXT_WINDOW='8k' is not a whole"),
        ("DEPSIM_JUDGE_CONTEXT_WINDOW", "100", "DEPSIM_JUDGE_CONTEXT_WINDOW='100' is outside"),
        (
            "DEPSIM_JUDGE_LAYOUT",
            "per-family",
            "DEPSIM_JUDGE_LAYOUT='per-family': expected one of auto|all|family|behaviour",
        ),
        ("DEPSIM_JUDGE_MAX_OUTPUT_TOKENS", "0", "DEPSIM_JUDGE_MAX_OUTPUT_TOKENS='0' is outside"),
        ("DEPSIM_JUDGE_BASE_URL", "localhost:8000", "DEPSIM_JUDGE_BASE_URL='localhost:8000' is"),
        ("DEPSIM_JUDGE_MODEL", "   ", None),  # blank = unset: the default model
    ],
)
def test_invalid_values_are_refused_by_name(clean_env, name, value, says):
    clean_env.setenv(name, value)
    if says is None:
        assert JudgeEndpoint().model == "sim-judge"
        return
    with pytest.raises(EndpointError) as caught:
        JudgeEndpoint()
    assert says in str(caught.value) and "\n" not in str(caught.value)
    # the code location refuses to load with the same line (not a pydantic dump)
    with pytest.raises(EndpointError, match=name):
        build_resources()


def test_a_key_pasted_into_the_key_variable_is_not_echoed(clean_env):
    key = "sk-proj-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"
    clean_env.setenv("DEPSIM_JUDGE_API_KEY_ENV", key)
    with pytest.raises(EndpointError) as caught:
        JudgeEndpoint()
    assert "DEPSIM_JUDGE_API_KEY_ENV must be the NAME" in str(caught.value)
    assert key not in str(caught.value) and "4f9a8b" not in str(caught.value)
    # nor is a password in the URL
    clean_env.delenv("DEPSIM_JUDGE_API_KEY_ENV")
    clean_env.setenv("DEPSIM_JUDGE_BASE_URL", "ftp://user:hunter2secret@host/v1")
    with pytest.raises(EndpointError) as caught:
        JudgeEndpoint()
    assert "hunter2secret" not in str(caught.value)


def test_a_bad_override_is_refused_by_field(clean_env):
    with pytest.raises(EndpointError, match="judge structured_output='xml': expected one of"):
        JudgeEndpoint(structured_output="xml")


@pytest.mark.slow  # starts a Dagster run
def test_dagster_replaces_constructor_values_at_launch():
    """Why the env lookup sits in the resource itself: Dagster's own behaviour on 1.13, shown
    on a plain resource (if a release starts merging, this fails and the reason is gone)."""

    class Plain(dg.ConfigurableResource):
        base_url: str = "sim"
        timeout_s: float = 120.0

    @dg.asset
    def probe(plain: Plain) -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"url": plain.base_url, "t": plain.timeout_s})

    result = dg.materialize(
        [probe],
        resources={"plain": Plain(base_url="http://real:1/v1")},
        run_config={"resources": {"plain": {"config": {"timeout_s": 900}}}},
    )
    (event,) = result.get_asset_materialization_events()
    assert event.materialization.metadata["url"].value == "sim"  # the constructor's value lost


@dg.asset(partitions_def=candidate_by_date)
def judge_settings_probe(judge: JudgeEndpoint) -> dg.MaterializeResult:
    """The judge resource as a run sees it (same resource key and config as judge_grades)."""
    return dg.MaterializeResult(metadata={"settings": dg.MetadataValue.json(judge.settings())})


DAY = "2026-11-02"
BASE = "sim-production"
OVERRIDE = {"resources": {"judge": {"config": {"timeout_s": 900}}}}


def _stats(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/sim/stats", timeout=10) as response:
        return json.loads(response.read())


def _judge_rows(conn_path, candidate=BASE):
    with duckdb.connect(str(conn_path), read_only=True) as conn:
        return conn.execute(
            "SELECT DISTINCT judge_endpoint, judge_model FROM judge_grades WHERE candidate = ?",
            [candidate],
        ).fetchall()


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    """One small day sampled and replayed for the baseline (no grades yet), on the instance
    under $DAGSTER_HOME so a `dagster` subprocess sees the same partitions."""
    home = tmp_path_factory.mktemp("judge-config-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEPSIM_HOME", str(home))
        mp.setenv("DAGSTER_HOME", str(home / "dagster"))
        for name in ("DEPSIM_WAREHOUSE", "DEPSIM_MIN_SAMPLE", *ALL_ENV):
            mp.delenv(name, raising=False)
        write_demo_log(config.log_root(), [DAY], per_day=60, seed=21)
        save_registry(
            Registry(baseline=BASE, candidates=[Candidate(name=BASE, base_url="sim", model=BASE)])
        )
        instance = cli._instance()
        runs.ensure_candidate_partitions(instance, [BASE])
        traffic = {"ops": {"sampled_conversations": {"config": {"sample_size": 30}}}}
        for selection, key, run_config in (
            (runs.TRAFFIC_ASSETS, DAY, traffic),
            (["candidate_completions"], str(multi_key(BASE, DAY)), None),
        ):
            result = dg.materialize(
                ASSETS,
                selection=list(selection),
                partition_key=key,
                instance=instance,
                resources=build_resources(),
                run_config=run_config,
            )
            assert result.success
        yield {"home": home, "instance": instance, "mp": mp}


@pytest.mark.e2e
def test_a_partial_override_keeps_the_environments_endpoint(replayed):
    """dg.materialize with only timeout_s overridden: the grades come from the server
    DEPSIM_JUDGE_BASE_URL names (a second simulator), not the built-in one."""
    mp = replayed["mp"]
    with SimServer() as second:
        mp.setenv("DEPSIM_JUDGE_BASE_URL", second.base_url)
        mp.setenv("DEPSIM_JUDGE_MAX_CONCURRENCY", "5")
        try:
            result = dg.materialize(
                [*ASSETS, judge_settings_probe],
                selection=["judge_grades", "judge_settings_probe"],
                partition_key=str(multi_key(BASE, DAY)),
                instance=replayed["instance"],
                resources=build_resources(),
                run_config=OVERRIDE,
            )
        finally:
            mp.delenv("DEPSIM_JUDGE_BASE_URL")
            mp.delenv("DEPSIM_JUDGE_MAX_CONCURRENCY")
        assert result.success
        called = _stats(second.base_url)
    probe = {
        e.asset_key.path[0]: e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }["judge_settings_probe"]["settings"].value
    # the override applied, and everything it did not name still came from the environment
    assert probe["timeout_s"] == 900.0
    assert probe["base_url"] == display_endpoint(second.base_url)
    assert probe["max_concurrency"] == 5 and probe["model"] == "sim-judge"
    assert _judge_rows(config.warehouse_path()) == [
        (display_endpoint(second.base_url), "sim-judge")
    ]
    assert called["by_model"].get("sim-judge", 0) >= 30  # the second server did the grading


@pytest.mark.e2e
def test_dagster_cli_config_json_keeps_the_environments_endpoint(replayed):
    """The command of issue 12, in a subprocess: `dagster asset materialize --config-json`."""
    with SimServer() as third:
        env = {**os.environ, "DEPSIM_JUDGE_BASE_URL": third.base_url}
        done = subprocess.run(
            [
                os.path.join(os.path.dirname(sys.executable), "dagster"),
                "asset",
                "materialize",
                "-m",
                "depsim_assets.definitions",
                "--select",
                "judge_grades",
                "--partition",
                f"{BASE}|{DAY}",
                "--config-json",
                json.dumps(OVERRIDE),
            ],
            cwd=config.PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        called = _stats(third.base_url)
    assert _judge_rows(config.warehouse_path()) == [(display_endpoint(third.base_url), "sim-judge")]
    assert called["by_model"].get("sim-judge", 0) >= 30
