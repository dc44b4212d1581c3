"""A day of traffic replayed by a real model and graded by a real model, through Dagster.

SmolLM2-135M-Instruct is served on loopback by two real servers that depsim did not write:
llama.cpp's ``llama-server`` (takes ``json_schema``) and llama-cpp-python's server (refuses
``json_schema`` with HTTP 500, takes ``json_object`` with a schema). The candidate is the model
on ``llama-server``; the judge grades the same replies once on each server. One planted
conversation is longer than the model's 8k context: it must end as a per-row reason, not a
failed run. Nothing here is the simulator.
"""

from __future__ import annotations

import json
import time

import dagster as dg
import duckdb
import httpx
import openai
import pytest

from depsim_assets import config, runs
from depsim_assets.definitions import ASSETS, build_resources
from depsim_assets.judging import load_taxonomy
from depsim_assets.judging.judge import judge_messages, new_fence_token
from depsim_assets.partitions import multi_key
from depsim_assets.registry import make_candidate, upsert_candidate
from depsim_assets.resources import JudgeEndpoint
from depsim_demo.synth import write_demo_log
from depsim_tests.real_model import servers

pytestmark = [pytest.mark.real_model, pytest.mark.e2e]

DAY = "2026-11-05"
# Eleven eligible conversations (seed 11), one with tool calls. With eight, one verdict the
# small model fumbles would already put a judge under the 90%; eleven leave that one.
PER_DAY = 12
CANDIDATE = "smollm2-local"
HUGE_ID = "conv-huge-context"
# A 135M model on two shared cores under a JSON grammar: minutes per call when the machine
# is busy. Generous timeouts, no retries of a slow answer (each retry would wait as long).
TIMEOUT_S = 900


def _huge_record() -> str:
    """One conversation far longer than SmolLM2's 8,192 tokens (about 16k tokens of prose)."""
    words = ("the quarterly report lists revenue costs margins regions teams plans risks "
             "and a long appendix of tables").split()
    body = " ".join(f"{words[i % len(words)]}{i % 97}" for i in range(9000))
    record = {
        "conversation_id": HUGE_ID, "created_at": f"{DAY}T23:59:00Z", "user_id": "user-huge",
        "opted_out": False, "source": "chat", "model": "sim-production",
        "messages": [
            {"role": "user", "content": "Summarise this report in one line:\n" + body},
            {"role": "assistant", "content": "It is a quarterly report."},
        ],
    }
    return json.dumps(record)


@pytest.fixture(scope="module")
def day(tmp_path_factory, native_server):
    """A home with one day of demo traffic (plus the huge conversation) sampled whole, and the
    real model registered as a candidate on ``llama-server``."""
    root = tmp_path_factory.mktemp("real-home")
    with pytest.MonkeyPatch.context() as mp, dg.DagsterInstance.ephemeral() as instance:
        mp.setenv("DEPSIM_HOME", str(root))
        mp.delenv("DEPSIM_WAREHOUSE", raising=False)
        mp.setenv("DEPSIM_MIN_SAMPLE", "8")
        # The planted over-long conversation is one error and one unscored reply by design;
        # the blocking share checks must let a day of about ten replies through with it.
        mp.setenv("DEPSIM_MAX_ERROR_SHARE", "0.2")
        mp.setenv("DEPSIM_MAX_UNSCORED_SHARE", "0.2")
        files = write_demo_log(config.log_root(), [DAY], per_day=PER_DAY, seed=11)
        (files[DAY].parent / "part-00001.jsonl").write_text(_huge_record() + "\n")
        upsert_candidate(make_candidate(
            name=CANDIDATE, base_url=native_server.base_url, model=servers.MODEL,
            context_window=servers.CONTEXT_WINDOW, max_tokens=64, timeout_s=TIMEOUT_S,
            max_retries=1, max_concurrency=2, params={"temperature": 0},
        ))
        runs.ensure_candidate_partitions(instance, [CANDIDATE])
        plan = [r for r in runs.plan_graph([DAY], [], sample_size=100)
                if r.partition_key is not None]
        runs.execute(plan, instance)
        yield instance


def _materialize(instance, selection, judge: JudgeEndpoint):
    resources = {**build_resources(), "judge": judge}
    started = time.monotonic()
    result = dg.materialize(ASSETS, selection=selection, instance=instance,
                            partition_key=str(multi_key(CANDIDATE, DAY)), resources=resources)
    elapsed = time.monotonic() - started
    meta = {}
    for node in selection:
        (mat,) = result.asset_materializations_for_node(node)
        meta[node] = {k: v.value for k, v in mat.metadata.items()}
    return meta, elapsed


def _judge(server: servers.Server) -> JudgeEndpoint:
    return JudgeEndpoint(base_url=server.base_url, model=servers.MODEL,
                         context_window=servers.CONTEXT_WINDOW, timeout_s=TIMEOUT_S,
                         max_retries=1, max_concurrency=2, structured_output="auto",
                         max_output_tokens=1600)


def _rows(sql: str, *params):
    with duckdb.connect(str(config.warehouse_path()), read_only=True) as conn:
        return conn.execute(sql, list(params)).df()


@pytest.fixture(scope="module")
def replayed(day, native_server):
    """candidate_completions, judge_grades and behavior_rates for the real partition, the
    candidate and the judge both SmolLM2 on llama-server."""
    meta, elapsed = _materialize(
        day, ["candidate_completions", "judge_grades", "behavior_rates"], _judge(native_server))
    return meta, elapsed


def _report(label: str, grades, meta: dict, elapsed: float) -> None:
    per_reply = grades.groupby("completion_id")["status"].first()
    print(f"\n[real-model {label}] replies={len(per_reply)} "
          f"scored={int((per_reply == 'scored').sum())} seconds={elapsed:.0f} "
          f"mode={meta.get('structured_output')} layouts={meta.get('layouts_used')} "
          f"calls/reply={meta.get('judge_calls_per_reply')} "
          f"in_tokens/reply={meta.get('judge_input_tokens_per_reply')} "
          f"cached={meta.get('judge_cached_tokens')} reasons={meta.get('unscored_reasons')}")


def _check_grades(meta: dict, expected_mode: str) -> None:
    grades = _rows("SELECT g.*, c.status AS reply_status FROM judge_grades g "
                   "JOIN candidate_completions c USING (completion_id) WHERE g.candidate = ?",
                   CANDIDATE)
    ok = grades[grades["reply_status"] == "ok"]
    per_reply = ok.groupby("completion_id").agg(
        scored=("status", lambda s: bool((s == "scored").all())),
        categories=("category", "nunique"))
    # the full taxonomy on every reply, and at least 90% of the replies scored on all of it
    assert (per_reply["categories"] == len(load_taxonomy().ids)).all()
    assert per_reply["scored"].mean() >= 0.9, grades["unscored_reason"].value_counts()
    # the structured-output mode is on every grade row, and it is the one the server takes
    assert grades["structured_output"].notna().all()
    assert set(ok.loc[ok["status"] == "scored", "structured_output"]) == {expected_mode}
    assert meta["structured_output"] == expected_mode
    # cost of a reply, as the metadata says it
    assert meta["judge_calls_per_reply"] >= 1
    assert meta["judge_input_tokens_per_reply"] > 1000  # the instructions alone are ~2k tokens
    assert "judge_cached_tokens" in meta


def test_real_candidate_replies_and_a_too_long_prompt_is_a_row_reason(replayed):
    meta, elapsed = replayed
    rows = _rows("SELECT conversation_id, status, error, reply FROM candidate_completions "
                 "WHERE candidate = ?", CANDIDATE)
    huge = rows[rows["conversation_id"] == HUGE_ID]
    rest = rows[rows["conversation_id"] != HUGE_ID]
    assert len(rest) >= 8
    assert (rest["status"] == "ok").mean() >= 0.95, rest[["status", "error"]]
    assert rest.loc[rest["status"] == "ok", "reply"].str.strip().str.len().gt(0).all()
    # the over-long conversation ends as its own row with a clear reason, the run succeeded
    assert list(huge["status"]) == ["error"]
    assert huge["error"].iloc[0].startswith("context_length_exceeded: ")
    assert meta["candidate_completions"]["context_length_exceeded"] == 1
    print(f"\n[real-model candidate] replies={len(rows)} ok={int((rows['status'] == 'ok').sum())}"
          f" error={huge['error'].iloc[0][:160]!r} seconds(all three assets)={elapsed:.0f}")


def test_real_judge_on_llama_server_uses_json_schema(replayed):
    meta, elapsed = replayed
    _check_grades(meta["judge_grades"], "json_schema")
    grades = _rows("SELECT * FROM judge_grades WHERE candidate = ?", CANDIDATE)
    _report("judge llama-server", grades, meta["judge_grades"], elapsed)
    rates = _rows("SELECT * FROM behavior_rates WHERE candidate = ?", CANDIDATE)
    assert len(rates) == len(load_taxonomy().ids) and (rates["graded"] >= 8).all()


def test_real_judge_on_llama_cpp_python_falls_back_to_json_object(day, replayed, python_server):
    meta, elapsed = _materialize(day, ["judge_grades"], _judge(python_server))
    meta = meta["judge_grades"]
    _check_grades(meta, "json_object")
    # the refusal was seen once, in the server's own words, and not retried as transient
    assert any("Input should be" in r for r in meta["structured_output_refusals"])
    grades = _rows("SELECT * FROM judge_grades WHERE candidate = ?", CANDIDATE)
    assert set(grades["judge_endpoint"]) == {python_server.base_url}
    _report("judge llama-cpp-python", grades, meta, elapsed)


def test_a_second_call_reuses_the_cached_prompt_prefix(native_server):
    """llama-server's own counters: the second judge call on the same server reads the static
    instructions from its prompt cache (``timings.cache_n``, ``/slots``), only the fence line
    and the transcript anew."""
    tax = load_taxonomy()
    client = openai.OpenAI(base_url=native_server.base_url, api_key="none", timeout=TIMEOUT_S)
    prefix = [{"role": "user", "content": "What is the capital of France?"}]

    def call(reply: str):
        messages = judge_messages(tax, prefix=prefix, reply=reply, reasoning=None,
                                  tool_trace=None, flag_threshold=2,
                                  fence_token=new_fence_token())
        raw = client.chat.completions.with_raw_response.create(
            model=servers.MODEL, messages=messages, max_tokens=1, temperature=0,
            extra_body={"id_slot": 0})  # the same slot: its cache is the one to reuse
        return json.loads(raw.text)["timings"]

    first = call("Paris.")
    second = call("The capital of France is Paris.")
    system_tokens = second["prompt_n"] + second["cache_n"]
    print(f"\n[real-model prefix cache] first: prompt_n={first['prompt_n']} "
          f"cache_n={first['cache_n']}; second: prompt_n={second['prompt_n']} "
          f"cache_n={second['cache_n']}")
    assert second["cache_n"] > 0.8 * system_tokens
    assert second["prompt_n"] < 0.2 * system_tokens
    slots = httpx.get(f"{native_server.root}/slots", timeout=30).json()
    assert any(s.get("n_ctx") == servers.CONTEXT_WINDOW for s in slots)
