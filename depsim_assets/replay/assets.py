"""Dagster wrapper of the replay stage: regenerate every final reply with a candidate."""

import asyncio
import hashlib
import json
import time

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from depsim_assets import toolsim
from depsim_assets.endpoints import display_endpoint
from depsim_assets.metadata import rounded, table_metadata
from depsim_assets.models import (
    CONTEXT_LENGTH_EXCEEDED,
    NOT_ATTEMPTED,
    CallEngine,
    Limits,
    progress_reporter,
)
from depsim_assets.partitions import PRODUCTION, candidate_by_date, split_key
from depsim_assets.registry import Candidate, generation_code_version
from depsim_assets.replay.agentic import (
    STEP_LIMIT,
    TOOL_SIMULATOR_ERROR,
    LoopStats,
    ToolContext,
    replay_with_cache,
    tool_context,
)
from depsim_assets.replay.engine import (
    ReplayOutcome,
    ReplayRequest,
    params_json,
    request_params,
)
from depsim_assets.replay.tools import ToolCall, ToolResult, simulate_tools
from depsim_assets.resources import CandidateRegistry, RunBudget, ToolSimulator
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
            "steps": out.steps,
            "tool_calls": out.tool_calls,
        }
        for req, out in zip(requests, outcomes, strict=True)
    ]
    return pd.DataFrame(rows, columns=pd.Index(CANDIDATE_COMPLETIONS.column_names))


def engine_limits(entry: Candidate) -> Limits:
    """The call engine's limits for one registry entry."""
    return Limits(max_concurrency=entry.max_concurrency, rpm=entry.rpm, tpm=entry.tpm,
                  max_retries=entry.max_retries)


def _replay(
    context: dg.AssetExecutionContext,
    warehouse: DuckDBResource,
    entry: Candidate,
    requests: list[ReplayRequest],
    contexts: list[ToolContext | None],
    *,
    engine: CallEngine,
    tool_simulator: ToolSimulator,
    day: str,
) -> tuple[list[ReplayOutcome], LoopStats]:
    """Every request's turn (cached steps and tool results reused), and the loop's counts."""
    stats = LoopStats()

    async def simulate(calls: list[ToolCall]) -> list[ToolResult]:
        return await simulate_tools(warehouse, tool_simulator, calls, budget=engine.budget,
                                    log=context.log.info)

    outcomes = asyncio.run(replay_with_cache(
        warehouse, entry, requests, contexts, engine=engine, simulate=simulate,
        traffic_date=day, partition_key=str(context.partition_key), stats=stats,
        log=context.log.info))
    return outcomes, stats


def trajectory_examples(frame: pd.DataFrame, n: int = 3) -> pd.DataFrame:
    """Up to ``n`` turns that called tools, one line each: the calls in order with where
    their results came from, then how the turn ended (a table preview of trajectories)."""
    records = [r for r in frame.to_dict("records") if (r["tool_calls"] or 0) > 0]
    # The longest turns first: they show the most of the loop.
    records.sort(key=lambda r: (-int(r["steps"] or 0), str(r["conversation_id"])))
    rows = []
    for record in records[:n]:
        trace = json.loads(record["tool_trace"] or "[]")
        calls = " -> ".join(
            f"{e.get('name')}({str(e.get('arguments'))[:40]}) [{e.get('result_source')}]"
            for e in trace)
        rows.append({"conversation_id": record["conversation_id"], "steps": record["steps"],
                     "status": record["status"], "calls": calls,
                     "reply": str(record["reply"] or "")[:200]})
    return pd.DataFrame(rows, columns=pd.Index(
        ["conversation_id", "steps", "status", "calls", "reply"]))


def _trace_sources(frame: pd.DataFrame) -> dict[str, int]:
    counts = {toolsim.RESULT_REPLAYED: 0, toolsim.RESULT_SIMULATED: 0,
              toolsim.RESULT_SIMULATOR_ERROR: 0}
    for text in frame["tool_trace"]:
        for entry in json.loads(text or "[]"):
            source = entry.get("result_source") if isinstance(entry, dict) else None
            if source in counts:
                counts[source] += 1
    return counts


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
    tool_simulator: ToolSimulator,
) -> dg.MaterializeResult:
    """One row per prefix x sample: the candidate's regenerated final turn.

    Each row has the reply, reasoning (when the endpoint returns it), tool trace, tokens,
    latency and a status; a failed call is a row with status ``error``, never a missing row.
    An agentic prefix (declared tools, or tool calls in it) runs the candidate's turn until its
    final reply: each tool call is answered by the prefix's real result for the same call or
    by the tool simulator, up to the candidate's ``max_tool_calls``/``max_turn_tokens``
    (status ``step_limit`` past them); ``steps`` and ``tool_calls`` count the turn.
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
    stats = LoopStats()
    contexts: list[ToolContext | None] = []
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
        # The original final turn's steps are not in the log: unknown, not 1.
        frame["steps"] = None
        frame["tool_calls"] = None
    else:
        entry = registry.load().get(candidate)
        tools_json = (prefixes["tools_json"] if "tools_json" in prefixes
                      else pd.Series([None] * len(prefixes)))
        requests = []
        for cid, prefix, tools in zip(prefixes["conversation_id"], prefixes["prefix_json"],
                                      tools_json, strict=True):
            messages = json.loads(prefix)
            ctx = tool_context(messages, tools if isinstance(tools, str) else None)
            for k in range(entry.samples):
                requests.append(ReplayRequest(cid, k, messages))
                contexts.append(ctx)
        engine = CallEngine(
            engine_limits(entry),
            budget=budget.for_run(context),
            progress=progress_reporter(context.log, f"replay {candidate} {day}"),
        )
        outcomes, stats = _replay(context, warehouse, entry, requests, contexts, engine=engine,
                                  tool_simulator=tool_simulator, day=day)
        calls = stats.sent
        too_long = sum(1 for out in outcomes
                       if (out.error or "").startswith(CONTEXT_LENGTH_EXCEEDED))
        # Prompts longer than the model's context are per-row reasons, not a broken endpoint.
        if calls and not too_long and all(out.status == "error" for out in outcomes):
            # Nothing came back: keep the partition's previous rows rather than overwrite them.
            if all((out.error or "").startswith(TOOL_SIMULATOR_ERROR) for out in outcomes):
                raise dg.Failure(
                    f"candidate {candidate!r}: the tool simulator "
                    f"({tool_simulator.endpoint_label()}) failed every turn, first: "
                    f"{outcomes[0].error}")
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
    n_step_limit = int((frame["status"] == STEP_LIMIT).sum())
    steps = frame["steps"].astype("float64")  # NaN for the original replies
    any_steps = bool(steps.notna().any())
    sources = _trace_sources(frame)
    examples = trajectory_examples(frame)
    if n_step_limit:
        context.log.warning(
            f"{n_step_limit} of {len(frame)} turns hit their step limit before a final reply "
            "(rows kept with status=step_limit and the calls not run in the trace)")
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
            "step_limit": n_step_limit,
            "calls_made": calls,
            # Candidate steps answered from the response cache (a turn has one step per round).
            "cache_hits": (len(frame) if candidate == PRODUCTION else stats.requests) - calls,
            "tokens_in": int(frame["prompt_tokens"].sum()),
            "tokens_out": int(frame["completion_tokens"].sum()),
            "cost_usd": round(float(frame["cost_usd"].sum()), 6),
            "mean_latency_ms": rounded(float(frame["latency_ms"].mean())),
            "wall_s": round(time.perf_counter() - started, 2),
            "in_flight_limit_cuts": engine.limit.decreases if engine and engine.limit else 0,
            # The agentic loop: steps per turn, tool calls and where their results came from.
            "agentic_turns": int(sum(ctx is not None for ctx in contexts))
            if candidate != PRODUCTION else 0,
            "steps": int(steps.sum()),
            "steps_per_turn_mean": rounded(float(steps.mean())) if any_steps else 0.0,
            "steps_per_turn_max": int(steps.max()) if any_steps else 0,
            "tool_calls": int(frame["tool_calls"].astype("float64").sum()),
            "tool_results_replayed": sources[toolsim.RESULT_REPLAYED],
            "tool_results_simulated": sources[toolsim.RESULT_SIMULATED],
            "tool_simulator_errors": sources[toolsim.RESULT_SIMULATOR_ERROR],
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
            "example_trajectories": table_metadata(examples, max_rows=3),
            "dagster/column_schema": CANDIDATE_COMPLETIONS.column_schema(),
        }
    )
