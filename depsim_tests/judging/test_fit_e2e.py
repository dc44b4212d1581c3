"""judge_grades through Dagster against servers that are not OpenAI: the simulator playing
llama-cpp-python (no json_schema), a server with no response_format at all, and a small
context window. The mode and layout are on every grade row and in the metadata."""

import json

import dagster as dg
import duckdb
import httpx
import pytest

from depsim_assets import config, runs
from depsim_assets.definitions import ASSETS, build_resources
from depsim_assets.endpoints import resolve_base_url
from depsim_assets.judging import load_taxonomy
from depsim_assets.judging.judge import system_prompt
from depsim_assets.partitions import PRODUCTION, multi_key
from depsim_assets.resources import JudgeEndpoint
from depsim_demo import registry as demo
from depsim_demo.synth import write_demo_log

pytestmark = pytest.mark.e2e

DAY = "2026-11-03"
SAMPLE = 16


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """One day of production replies, ready to grade."""
    root = tmp_path_factory.mktemp("fit-home")
    with pytest.MonkeyPatch.context() as mp, dg.DagsterInstance.ephemeral() as instance:
        mp.setenv("DEPSIM_HOME", str(root))
        mp.delenv("DEPSIM_WAREHOUSE", raising=False)
        mp.setenv("DEPSIM_MIN_SAMPLE", str(SAMPLE))  # a small day keeps the test quick
        write_demo_log(config.log_root(), [DAY], per_day=40, seed=5)
        demo.register_sim_candidates()
        runs.ensure_candidate_partitions(instance, [])
        plan = [r for r in runs.plan_graph([DAY], [], sample_size=SAMPLE)
                if r.partition_key is not None]
        runs.execute(plan, instance)
        yield instance


def _requests(model):
    return httpx.get(f"{resolve_base_url('sim')}/sim/stats").json()["by_model"].get(model, 0)


def _grade(instance, judge, run_config=None):
    resources = {**build_resources(), "judge": judge}
    before = _requests(judge.model)
    result = dg.materialize(ASSETS, selection=["judge_grades"], instance=instance,
                            partition_key=str(multi_key(PRODUCTION, DAY)),
                            resources=resources, run_config=run_config)
    (mat,) = result.asset_materializations_for_node("judge_grades")
    meta = {k: v.value for k, v in mat.metadata.items()}
    with duckdb.connect(str(config.warehouse_path()), read_only=True) as conn:
        rows = conn.execute("SELECT * FROM judge_grades WHERE candidate = ?",
                            [PRODUCTION]).df()
        remembered = conn.execute(
            "SELECT payload_json FROM model_calls WHERE kind = 'capability' AND model = ?",
            [judge.model]).fetchall()
    return rows, meta, _requests(judge.model) - before, remembered


def test_llama_cpp_python_flavour_falls_back_to_json_object_and_remembers_it(home):
    judge = JudgeEndpoint(base_url="sim", model="sim-judge@llama-cpp-python")
    rows, meta, requests, remembered = _grade(home, judge)
    assert len(rows) == SAMPLE * 20 and set(rows["status"]) == {"scored"}
    assert set(rows["structured_output"]) == {"json_object"}
    assert set(rows["judge_layout"]) == {"all"}
    assert requests == SAMPLE + 1  # one refused probe, then one call per reply
    assert meta["structured_output"] == "json_object"
    assert "Input should be 'text' or 'json_object'" in meta["structured_output_refusals"][0]
    # the refused probe counts: it was a request
    assert meta["judge_calls_per_reply"] == round((SAMPLE + 1) / SAMPLE, 2)
    assert meta["judge_input_tokens_per_reply"] > 0
    assert [json.loads(p)["structured_output"] for (p,) in remembered] == ["json_object"]
    # the next run (verdicts not reusable: another prefix budget) starts in the known mode
    rows, meta, requests, _ = _grade(
        home, judge, {"ops": {"judge_grades": {"config": {"prefix_token_budget": 5000}}}})
    assert requests == SAMPLE and meta["structured_output_refusals"] == []
    assert set(rows["structured_output"]) == {"json_object"}


def test_a_small_context_window_splits_the_judge_by_family(home):
    tax = load_taxonomy()
    # room for the all-in-one prompt (with its schema) but not for it, its answer (at least
    # 384 tokens for 20 categories) and a transcript; a family's prompt is ~40% smaller
    words = len(system_prompt(tax, fence_token="0" * 16, flag_threshold=2,
                              structured_output="prompt").split())
    model = f"sim-judge@no-response-format@ctx{words + 380}"
    judge = JudgeEndpoint(base_url="sim", model=model, context_window=words + 380)
    rows, meta, requests, _ = _grade(home, judge)
    assert set(rows["structured_output"]) == {"prompt"}
    assert set(rows["judge_layout"]) == {"family"}
    assert (rows["monitor"] == rows["family"]).all()
    assert set(rows["status"]) == {"scored"}
    assert meta["layouts_used"] == {"family": SAMPLE}
    assert meta["judge_calls_per_reply"] == round((2 * SAMPLE + 2) / SAMPLE, 2)
    assert meta["token_counts_from"] == "tokenizer"
    assert requests == 2 * SAMPLE + 2  # two refused probes
    # the server reports the repeated static prefix as cached
    assert meta["judge_cached_tokens"] > 0


def test_a_reply_longer_than_the_window_is_unscored_without_a_request(home):
    judge = JudgeEndpoint(base_url="sim", model="sim-judge@ctx700", context_window=700)
    # every reply unscored: the blocking unscored-share check is told to let it through
    lenient = {"ops": {"judge_grades_judge_grades_unscored_share": {
        "config": {"max_unscored_share": 1.0}}}}
    rows, meta, requests, _ = _grade(home, judge, lenient)
    assert requests == 0
    assert set(rows["status"]) == {"unscored"}
    assert rows["unscored_reason"].str.startswith("context_length_exceeded: ").all()
    assert meta["unscored_reasons"] == {"context_length_exceeded": SAMPLE}
    assert set(rows["structured_output"]) == {"json_schema"}
