"""Dagster wrapper of the replay stage: regenerate every final reply with a candidate."""

import asyncio
import hashlib
import json
import time

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from depsim_assets.endpoints import async_client, display_endpoint, resolve_base_url
from depsim_assets.metadata import rounded, table_metadata
from depsim_assets.models import (
    CONTEXT_LENGTH_EXCEEDED,
    NOT_ATTEMPTED,
    Answers,
    CallEngine,
    Limits,
    TokenCounter,
    answer_all,
    progress_reporter,
    request_key,
)
from depsim_assets.partitions import PRODUCTION, candidate_by_date, split_key
from depsim_assets.registry import Candidate, generation_code_version
from depsim_assets.replay.batch import batch_calls
from depsim_assets.replay.engine import (
    REPLY_CODEC,
    ReplayOutcome,
    ReplayRequest,
    not_attempted,
    params_json,
    reply_worker,
    request_params,
    sent_params,
)
from depsim_assets.resources import CandidateRegistry, RunBudget
from depsim_assets.warehouse import (
    CANDIDATE_COMPLETIONS,
    CONVERSATION_PREFIXES,
    read_partition,
    replace_partitions,
)

GROUP = "replay"


def completion_id(candidate: str, day: str, conversation_id: str, sample_index: int) -> str:
    """Deterministic id from content, never from a list position."""
    raw = f"{candidate}|{day}|{conversation_id}|{sample_index}"
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def _rows(
    candidate: str,
    day: str,
    requests: list[ReplayRequest],
    outcomes: list[ReplayOutcome],
    *,
    endpoint: str,
    model: str,
    params: str,
    entry: Candidate | None = None,
) -> pd.DataFrame:
    rows = [
        {
            "completion_id": completion_id(candidate, day, req.conversation_id, req.sample_index),
            "candidate": candidate,
            "traffic_date": day,
            "conversation_id": req.conversation_id,
            "sample_index": req.sample_index,
            "reply": out.reply,
            "reasoning": out.reasoning,
            "tool_trace": json.dumps(out.tool_trace),
            "status": out.status,
            "error": out.error,
            "endpoint": endpoint,
            "model": model,
            "params_json": params,
            "prompt_tokens": out.prompt_tokens,
            "completion_tokens": out.completion_tokens,
            "latency_ms": out.latency_ms,
            "cost_usd": entry.cost_usd(out.prompt_tokens, out.completion_tokens) if entry else 0.0,
            "attempts": out.attempts,
        }
        for req, out in zip(requests, outcomes, strict=True)
    ]
    return pd.DataFrame(rows, columns=pd.Index(CANDIDATE_COMPLETIONS.column_names))


def engine_limits(entry: Candidate) -> Limits:
    """The call engine's limits for one registry entry."""
    return Limits(max_concurrency=entry.max_concurrency, rpm=entry.rpm, tpm=entry.tpm,
                  max_retries=entry.max_retries)


def _replay_with_cache(
    context: dg.AssetExecutionContext,
    warehouse: DuckDBResource,
    entry: Candidate,
    requests: list[ReplayRequest],
    engine: CallEngine,
) -> tuple[list[ReplayOutcome], int]:
    """Outcomes for every request (cached answers reused); returns them and calls made."""
    endpoint = display_endpoint(entry.base_url)
    params = request_params(entry.params, entry.max_tokens)

    def key(request: ReplayRequest) -> str:
        return request_key(endpoint=endpoint, model=entry.model,
                           params=sent_params(params, request), messages=request.messages,
                           sample_index=request.sample_index)

    def announce(cached: int, pending: int) -> None:
        context.log.info(f"replay {entry.name}: {cached} answers cached, {pending} to call")

    async def replay() -> Answers[ReplayOutcome]:
        # The engine retries and counts every attempt; the client's own retries are off.
        client = async_client(entry.base_url, api_key_env=entry.api_key_env,
                              timeout_s=entry.timeout_s, max_retries=0,
                              max_connections=entry.max_concurrency)
        # The server's tokenizer (llama.cpp's /tokenize) when the window is known and it has one.
        counter = TokenCounter(resolve_base_url(entry.base_url) if entry.context_window else None,
                               timeout_s=min(entry.timeout_s, 30.0))
        async with client:
            return await answer_all(
                warehouse, requests, kind="replay", endpoint=endpoint, model=entry.model,
                key=key,
                call=reply_worker(
                    client, engine=engine, model=entry.model, params=params,
                    cost=lambda out: entry.cost_usd(out.prompt_tokens, out.completion_tokens),
                    context_window=entry.context_window, counter=counter),
                skipped=not_attempted, codec=REPLY_CODEC, engine=engine,
                # The Batch API instead of online calls.
                batch=batch_calls(entry, partition_key=str(context.partition_key))
                if entry.mode == "batch" else None,
                on_lookup=announce, log=context.log.info)

    answers = asyncio.run(replay())
    return answers.outcomes, answers.sent


@dg.asset(
    partitions_def=candidate_by_date,
    group_name=GROUP,
    deps=["conversation_prefixes"],  # by key: stages share tables, not code
    # Generation settings of the registry at load: a changed model/params shows as stale.
    code_version=f"replay-v1.{generation_code_version()}",
    metadata={"dagster/column_schema": CANDIDATE_COMPLETIONS.column_schema()},
)
def candidate_completions(
    context: dg.AssetExecutionContext,
    warehouse: DuckDBResource,
    registry: CandidateRegistry,
    budget: RunBudget,
) -> dg.MaterializeResult:
    """One row per prefix x sample: the candidate's regenerated final reply.

    Each row has the reply, reasoning (when the endpoint returns it), tool trace, tokens,
    latency and a status; a failed call is a row with status ``error``, never a missing row.
    The ``production`` candidate makes no call: its completions are the original replies.
    """
    candidate, day = split_key(context)
    with warehouse.get_connection() as conn:
        prefixes = read_partition(conn, CONVERSATION_PREFIXES, {"traffic_date": day})
    # The connection is released here: DuckDB allows one writer, and model calls are slow.
    if prefixes.empty:
        raise dg.Failure(
            f"no conversation_prefixes for {day}: materialize that day's traffic assets first"
        )
    started = time.perf_counter()
    engine: CallEngine | None = None
    if candidate == PRODUCTION:
        calls = 0
        requests = [ReplayRequest(cid, 0, []) for cid in prefixes["conversation_id"]]
        outcomes = [ReplayOutcome(status="ok", reply=text) for text in prefixes["original_reply"]]
        frame = _rows(
            candidate,
            day,
            requests,
            outcomes,
            endpoint="production-log",
            model=",".join(sorted(set(prefixes["production_model"]))),
            params="{}",
        )
    else:
        entry = registry.load().get(candidate)
        requests = [
            ReplayRequest(cid, k, json.loads(prefix))
            for cid, prefix in zip(
                prefixes["conversation_id"], prefixes["prefix_json"], strict=True
            )
            for k in range(entry.samples)
        ]
        engine = CallEngine(
            engine_limits(entry),
            budget=budget.for_run(context),
            progress=progress_reporter(context.log, f"replay {candidate} {day}"),
        )
        outcomes, calls = _replay_with_cache(context, warehouse, entry, requests, engine)
        too_long = sum(1 for out in outcomes
                       if (out.error or "").startswith(CONTEXT_LENGTH_EXCEEDED))
        # Prompts longer than the model's context are per-row reasons, not a broken endpoint.
        if calls and not too_long and all(out.status == "error" for out in outcomes):
            # Nothing came back: keep the partition's previous rows rather than overwrite them.
            raise dg.Failure(
                f"candidate {candidate!r}: all {calls} calls to "
                f"{display_endpoint(entry.base_url)} failed, first: {outcomes[0].error}"
            )
        frame = _rows(
            candidate,
            day,
            requests,
            outcomes,
            endpoint=display_endpoint(entry.base_url),
            model=entry.model,
            params=params_json(request_params(entry.params, entry.max_tokens)),
            entry=entry,
        )
    with warehouse.get_connection() as conn:
        replace_partitions(
            conn, [(CANDIDATE_COMPLETIONS, frame, {"candidate": candidate, "traffic_date": day})]
        )
    n_error = int((frame["status"] == "error").sum())
    n_skipped = int((frame["status"] == NOT_ATTEMPTED).sum())
    if n_error:
        context.log.warning(f"{n_error} of {len(frame)} calls failed; rows kept with status=error")
    if n_skipped:
        context.log.warning(
            f"the run's budget was reached: {n_skipped} of {len(frame)} requests not attempted "
            "(rows kept with status=not_attempted; materialize again with a larger budget)")
    return dg.MaterializeResult(
        metadata={
            # Row count and status counts first, then calls and their cost, then breakdowns.
            "dagster/row_count": len(frame),
            "ok": int((frame["status"] == "ok").sum()),
            "error": n_error,
            "context_length_exceeded": int(
                frame["error"].fillna("").str.startswith(CONTEXT_LENGTH_EXCEEDED).sum()),
            "not_attempted": n_skipped,
            "calls_made": calls,
            "cache_hits": len(frame) - calls,
            "tokens_in": int(frame["prompt_tokens"].sum()),
            "tokens_out": int(frame["completion_tokens"].sum()),
            "cost_usd": round(float(frame["cost_usd"].sum()), 6),
            "mean_latency_ms": rounded(float(frame["latency_ms"].mean())),
            "wall_s": round(time.perf_counter() - started, 2),
            "in_flight_limit_cuts": engine.limit.decreases if engine and engine.limit else 0,
            "attempts_by_outcome": dg.MetadataValue.json(
                dict(engine.attempts) if engine is not None else {}),
            "errors_by_class": dg.MetadataValue.json(
                frame.loc[frame["status"] == "error", "error"]
                .str.split(":")
                .str[0]
                .value_counts()
                .to_dict()
            ),
            "preview": table_metadata(
                frame,
                columns=["conversation_id", "sample_index", "status", "reply"],
                max_rows=10,
            ),
            "dagster/column_schema": CANDIDATE_COMPLETIONS.column_schema(),
        }
    )
