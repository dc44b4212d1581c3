"""Batch mode: the OpenAI Batch API path gives the online path's rows, resumes, keeps failures."""

import asyncio
import json
import time
import urllib.request

import dagster as dg
import duckdb
import pytest

from depsim_assets import config, runs
from depsim_assets.models import (
    BUDGET_REACHED,
    Budget,
    CallEngine,
    Limits,
    answer_all,
    build_input,
    result_from_line,
)
from depsim_assets.registry import Candidate, Registry, parse_registry, save_registry
from depsim_assets.replay.batch import (
    batch_calls,
    estimate_usd,
    outcome_from_result,
    request_body,
)
from depsim_assets.replay.engine import REPLY_CODEC, ReplayRequest, not_attempted
from depsim_assets.resources import Warehouse
from depsim_assets.sim import SimServer
from depsim_assets.sim.faults import FaultPlan
from depsim_demo.synth import write_demo_log

DAY, SAMPLE = "2026-11-01", 60
COLUMNS = [
    "conversation_id",
    "sample_index",
    "status",
    "reply",
    "reasoning",
    "tool_trace",
    "error",
    "prompt_tokens",
    "completion_tokens",
    "model",
    "params_json",
]


def _stats(server: SimServer) -> dict:
    with urllib.request.urlopen(server.base_url + "/sim/stats", timeout=10) as resp:
        return json.load(resp)


def _entry(name: str, base_url: str, **extra) -> Candidate:
    return Candidate(
        name=name,
        base_url=base_url,
        model="sim-candidate-regressed",
        samples=2,
        params={"temperature": 1.0, "max_tokens": 256},
        batch_poll_s=0.1,
        **extra,
    )


def _setup(instance, entries: list[Candidate]) -> None:
    write_demo_log(config.log_root(), [DAY], per_day=120, seed=3)
    save_registry(Registry(baseline=entries[0].name, candidates=entries))
    names = [e.name for e in entries]
    runs.ensure_candidate_partitions(instance, names)
    runs.execute(
        [
            r
            for r in runs.plan_graph([DAY], names, sample_size=SAMPLE)
            if r.label.startswith("traffic")
        ],
        instance,
    )


def _replay(instance, name: str) -> dict:
    key = str(runs.multi_key(name, DAY))
    runs.execute([runs.PlannedRun(name, ("candidate_completions",), key)], instance)
    event = instance.get_latest_materialization_event(dg.AssetKey("candidate_completions"))
    return event.asset_materialization.metadata


def _rows(name: str):
    with duckdb.connect(str(config.warehouse_path()), read_only=True) as conn:
        return conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM candidate_completions WHERE candidate = ? "
            "ORDER BY conversation_id, sample_index",
            [name],
        ).df()


def _batches():
    with duckdb.connect(str(config.warehouse_path()), read_only=True) as conn:
        return conn.execute("SELECT * FROM model_batches ORDER BY created_at").df()


def test_mode_is_validated_and_defaults_to_online():
    assert Candidate(name="a", base_url="sim", model="m").mode == "online"
    text = "candidates:\n  - {name: a, base_url: sim, model: m, mode: offline}\n"
    with pytest.raises(ValueError, match="candidate 'a' field 'mode'"):
        parse_registry(text)
    assert parse_registry(text.replace("offline", "batch")).candidates[0].mode == "batch"


def test_batch_lines_send_what_the_online_path_sends():
    entry = _entry("b", "sim", mode="batch")
    req = ReplayRequest("conv-1", 1, [{"role": "user", "content": "héllo"}])
    body = request_body(entry, req)
    lines = build_input([("k1", body), ("k1", body)]).splitlines()
    assert len(lines) == 1  # one line per distinct key: custom_ids must be unique
    line = json.loads(lines[0])
    assert line["custom_id"] == "k1" and line["url"] == "/v1/chat/completions"
    assert line["body"]["messages"] == req.messages and line["body"]["max_tokens"] == 256
    assert isinstance(line["body"]["seed"], int)  # the per-sample seed, as sent online
    failed = outcome_from_result(result_from_line(
        {
            "custom_id": "k1",
            "response": {"status_code": 429, "body": {"error": {"message": "slow down"}}},
            "error": None,
        }
    ))
    assert failed.status == "error" and failed.error.startswith("RateLimitError: Error code: 429")


@pytest.mark.e2e
def test_batch_rows_equal_online_rows(depsim_home, instance):
    with SimServer(faults=FaultPlan(batch_delay_s=0.3)) as server:
        # The online twin calls the process's own simulator ('sim'): a different endpoint,
        # so neither candidate's answers are the other's cache hits.
        _setup(
            instance, [_entry("online", "sim"), _entry("batched", server.base_url, mode="batch")]
        )
        online_meta = _replay(instance, "online")
        batch_meta = _replay(instance, "batched")
        served = _stats(server)
        online, batched = _rows("online"), _rows("batched")
        assert len(online) == SAMPLE * 2 and (online["status"] == "ok").all()
        assert online.equals(batched)
        assert served["total"] == 0  # no online call reached the batch endpoint
        assert served["batches"] == {"created": 1, "completed": 1, "lines": SAMPLE * 2}
        assert online_meta["calls_made"].value == batch_meta["calls_made"].value == SAMPLE * 2
        ledger = _batches()
        assert list(ledger["status"]) == ["completed"] and ledger["collected_at"].notna().all()
        assert ledger["n_requests"].tolist() == [SAMPLE * 2]
        # A rerun is all cache hits: nothing submitted, nothing called.
        again = _replay(instance, "batched")
        assert again["calls_made"].value == 0 and _stats(server)["batches"]["created"] == 1
        assert _rows("batched").equals(batched)


@pytest.mark.e2e
def test_a_restarted_run_resumes_the_persisted_batch(depsim_home, instance):
    with SimServer(faults=FaultPlan(batch_delay_s=3.0)) as server:
        entry = _entry("slow", server.base_url, mode="batch", batch_max_wait_s=0.5)
        _setup(instance, [entry])
        with pytest.raises(runs.RunFailed, match="BatchPending.*next materialization"):
            _replay(instance, "slow")
        pending = _batches()
        assert list(pending["status"]) == ["in_progress"]
        assert pending["collected_at"].isna().all()
        with duckdb.connect(str(config.warehouse_path()), read_only=True) as conn:
            assert conn.execute("SELECT count(*) FROM candidate_completions").fetchone()[0] == 0
        # Restarted without the wait limit: it polls the same batch, submits nothing.
        save_registry(
            Registry(
                baseline="slow", candidates=[entry.model_copy(update={"batch_max_wait_s": None})]
            )
        )
        started = time.monotonic()
        meta = _replay(instance, "slow")
        assert time.monotonic() - started < 10
        stats = _stats(server)
        assert stats["batches"]["created"] == 1 and stats["files"]["uploaded"] == 1
        assert meta["dagster/row_count"].value == SAMPLE * 2 and meta["ok"].value == SAMPLE * 2
        done = _batches()
        assert done["batch_id"].tolist() == pending["batch_id"].tolist()
        assert done["collected_at"].notna().all()


@pytest.mark.e2e
def test_failed_and_missing_lines_become_error_rows(depsim_home, instance, monkeypatch):
    monkeypatch.setenv("DEPSIM_MAX_ERROR_SHARE", "1")  # error rows are what this test wants
    plan = FaultPlan(batch_delay_s=0.2, rate_batch_fail=0.15, rate_batch_drop=0.05, seed=4)
    with SimServer(faults=plan) as server:
        _setup(instance, [_entry("flaky", server.base_url, mode="batch")])
        meta = _replay(instance, "flaky")
        served = _stats(server)["faults"]
        rows = _rows("flaky")
        assert len(rows) == SAMPLE * 2  # every request has a row, failed or lost
        errors = rows.loc[rows["status"] == "error", "error"]
        by_class = errors.str.split(":").str[0].value_counts().to_dict()
        assert by_class == {
            "InternalServerError": served["batch_fail"],
            "BatchLineMissing": served["batch_drop"],
        }
        assert served["batch_fail"] > 0 and served["batch_drop"] > 0
        assert rows.loc[rows["status"] == "error", "reply"].isna().all()
        assert meta["error"].value == len(errors)
        # Errors are not cache hits: the rerun submits a batch of exactly the failed requests.
        _replay(instance, "flaky")
        ledger = _batches()
        assert ledger["n_requests"].tolist() == [SAMPLE * 2, len(errors)]


def test_batch_requests_beyond_the_budget_are_not_attempted_and_actual_cost_is_charged(tmp_path):
    """The Batch API path under a budget: requests are taken in order while the spend plus
    their estimated cost fits, the rest are not_attempted outcomes (not dropped, not cached),
    and what the collected replies really cost is charged to the run's budget."""
    # $1 per generated token: a reply capped at 256 tokens is estimated at $256.
    entry = _entry("priced", "", mode="batch", price_out_per_mtok=1_000_000.0)
    requests = [
        ReplayRequest(f"conv-{i}", 0, [{"role": "user", "content": f"Question {i}: what now?"}])
        for i in range(10)
    ]
    warehouse = Warehouse(database=str(tmp_path / "warehouse.duckdb"))

    def run(server: SimServer, budget: Budget):
        e = entry.model_copy(update={"base_url": server.base_url})
        engine = CallEngine(Limits(), budget=budget)

        async def never(_request):  # batch mode: no online call may be made
            raise AssertionError("online call in batch mode")

        return asyncio.run(answer_all(
            warehouse, requests, kind="replay", endpoint=server.base_url, model=e.model,
            key=lambda r: f"{r.conversation_id}|{r.sample_index}", call=never,
            skipped=not_attempted, codec=REPLY_CODEC, engine=engine,
            batch=batch_calls(e, partition_key="test")))

    with SimServer(faults=FaultPlan(batch_delay_s=0.1)) as server:
        # $100 already spent by earlier steps of the run: $1,000 left admits 3 x $256.
        budget = Budget(max_usd=1100.0, spent_usd=100.0)
        assert estimate_usd(entry, requests[0]) == 256.0
        answers = run(server, budget)
        statuses = [out.status for out in answers.outcomes]
        assert statuses == ["ok"] * 3 + ["not_attempted"] * 7
        assert answers.sent == 3 and answers.not_attempted == 7 and answers.cached == 0
        assert all(out.error == BUDGET_REACHED for out in answers.outcomes[3:])
        assert _stats(server)["batches"]["lines"] == 3  # only what the budget admits is sent
        actual = sum(out.completion_tokens for out in answers.outcomes[:3]) * 1.0
        assert 0 < actual <= 3 * 256
        assert budget.spent_usd == pytest.approx(100.0 + actual)  # charged after collection

        # Another step with budget left: the 3 answers are cache hits (free), only the 7
        # not attempted are asked for, and a budget that fits them all sends them all.
        again = run(server, Budget(max_usd=10_000.0))
        assert again.cached == 3 and again.sent == 7 and again.not_attempted == 0
        assert [out.status for out in again.outcomes] == ["ok"] * 10
        assert again.outcomes[:3] == answers.outcomes[:3]
        assert _stats(server)["batches"]["lines"] == 10


@pytest.mark.e2e
def test_a_run_budget_limits_a_batch_replay(depsim_home, instance, monkeypatch):
    """Through Dagster: DEPSIM_RUN_BUDGET_USD stops a batch replay at the estimate; the rest
    are rows with status not_attempted, and the spend stays within the budget."""
    monkeypatch.setenv("DEPSIM_RUN_BUDGET_USD", str(256 * 50))  # 50 replies at the estimate
    # Rows left not_attempted fail the error-share check by design; here they are the point.
    monkeypatch.setenv("DEPSIM_MAX_ERROR_SHARE", "1")
    with SimServer(faults=FaultPlan(batch_delay_s=0.2)) as server:
        entry = _entry("capped", server.base_url, mode="batch", price_out_per_mtok=1_000_000.0)
        _setup(instance, [entry])
        meta = _replay(instance, "capped")
        rows = _rows("capped")
        assert len(rows) == SAMPLE * 2  # every request has a row
        assert (rows["status"] == "ok").sum() == 50
        skipped = rows[rows["status"] == "not_attempted"]
        assert len(skipped) == SAMPLE * 2 - 50 and skipped["reply"].isna().all()
        assert (skipped["error"] == BUDGET_REACHED).all()
        assert meta["not_attempted"].value == SAMPLE * 2 - 50
        assert meta["calls_made"].value == 50
        assert 0 < meta["cost_usd"].value <= 256 * 50
        assert _stats(server)["batches"]["lines"] == 50
