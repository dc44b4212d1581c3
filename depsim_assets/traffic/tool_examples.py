"""Real tool calls of a day, with the results the real tools returned: ``tool_examples``.

Every call an assistant made in a sampled conversation (prefix and final turn alike) that a
``tool`` message answered becomes one row: the tool's name, the arguments, the result and the
tool's declared schema when the record declared one. The rows come from
``sampled_conversations``, so they are already de-identified and residue-checked. Replay's
tool simulator shows the most similar of them to the model that imitates a tool, and the
realism asset samples them as the real side of its pairs.
"""

import json
from collections import Counter
from typing import Any

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from depsim_assets.messages import message_text
from depsim_assets.metadata import table_metadata
from depsim_assets.partitions import traffic_date
from depsim_assets.warehouse import (
    SAMPLED_CONVERSATIONS,
    TOOL_EXAMPLES,
    ensure_tables,
    replace_partitions,
)

GROUP = "traffic"


def schemas_by_name(tools_json: str | None) -> dict[str, dict[str, Any]]:
    """The declared functions of a ``tools_json`` value (each tool's ``function`` object:
    name, description, parameters), by name: the schema replay shows the tool simulator."""
    if not tools_json:
        return {}
    try:
        tools = json.loads(tools_json)
    except ValueError:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for tool in tools if isinstance(tools, list) else []:
        fn = tool.get("function") if isinstance(tool, dict) else None
        name = fn.get("name") if isinstance(fn, dict) else None
        if isinstance(name, str) and isinstance(fn, dict):
            out.setdefault(name, fn)
    return out


def example_rows(
    day: str, conversation_id: str, messages: list[dict[str, Any]], tools_json: str | None
) -> tuple[list[dict[str, Any]], int]:
    """``tool_examples`` rows of one conversation, and how many of its calls had no result."""
    schemas = schemas_by_name(tools_json)
    results: dict[str, str] = {}
    for msg in messages:
        call_id = msg.get("tool_call_id")
        if msg.get("role") == "tool" and isinstance(call_id, str) and call_id not in results:
            results[call_id] = message_text(msg)
    rows: list[dict[str, Any]] = []
    unanswered = 0
    index = 0
    for msg in messages:
        if msg.get("role") != "assistant":
            continue
        for call in msg.get("tool_calls") or []:
            fn = call.get("function") if isinstance(call, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                continue
            position, index = index, index + 1
            call_id = call.get("id")
            result = results.get(call_id) if isinstance(call_id, str) else None
            if result is None:
                unanswered += 1  # a call with no real result teaches a simulator nothing
                continue
            schema = schemas.get(fn["name"])
            rows.append({
                "traffic_date": day,
                "conversation_id": conversation_id,
                "call_index": position,
                "tool_name": fn["name"],
                "arguments": str(fn.get("arguments") or ""),
                "result": result,
                "schema_json": json.dumps(schema, ensure_ascii=False) if schema else None,
            })
    return rows, unanswered


def examples_of_day(sampled: pd.DataFrame, day: str) -> tuple[pd.DataFrame, int]:
    """The day's ``tool_examples`` frame from its sampled rows, and the unanswered calls."""
    rows: list[dict[str, Any]] = []
    unanswered = 0
    for rec in sampled.to_dict("records"):
        if not rec.get("has_tool_calls"):
            continue
        found, missed = example_rows(day, str(rec["conversation_id"]),
                                     json.loads(rec["messages_json"]), rec.get("tools_json"))
        rows.extend(found)
        unanswered += missed
    frame = TOOL_EXAMPLES.frame(rows)
    return frame.sort_values(["conversation_id", "call_index"], ignore_index=True), unanswered


@dg.asset(
    partitions_def=traffic_date,
    group_name=GROUP,
    deps=["sampled_conversations"],
    code_version="tool-examples-v1",
    metadata={"dagster/column_schema": TOOL_EXAMPLES.column_schema()},
)
def tool_examples(
    context: dg.AssetExecutionContext, warehouse: DuckDBResource
) -> dg.MaterializeResult:
    """One row per real tool call of the day's sampled conversations that a tool answered:
    name, arguments, the real result, the declared schema (de-identified like every text).

    The store the tool simulator draws its examples from (the most similar real calls of the
    same tool) and the real side of the realism discriminator's pairs.
    """
    day = context.partition_key
    keys = {"traffic_date": day}
    with warehouse.get_connection() as conn:
        ensure_tables(conn)
        sampled = conn.execute(
            "SELECT conversation_id, has_tool_calls, messages_json, tools_json "
            f"FROM {SAMPLED_CONVERSATIONS.name} WHERE traffic_date = ?", [day]
        ).df()
    frame, unanswered = examples_of_day(sampled, day)
    with warehouse.get_connection() as conn:
        # One transaction: the day's examples are replaced whole or not at all.
        replace_partitions(conn, [(TOOL_EXAMPLES, frame, keys)])
    if sampled.empty:
        context.log.warning(f"no sampled conversations for {day}: run sampled_conversations")
    per_tool = (
        frame.groupby("tool_name")
        .agg(calls=("call_index", "size"), conversations=("conversation_id", "nunique"),
             with_schema=("schema_json", "count"))
        .reset_index()
        .sort_values(["calls", "tool_name"], ascending=[False, True], ignore_index=True)
    )
    counts = Counter(dict(zip(per_tool["tool_name"], per_tool["calls"], strict=True)))
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(frame),
            "tools": len(per_tool),
            "conversations_with_calls": int(frame["conversation_id"].nunique()),
            "calls_without_result": unanswered,
            "calls_with_schema": int(frame["schema_json"].notna().sum()),
            "calls_per_tool": dg.MetadataValue.json({str(k): int(v) for k, v in
                                                     counts.most_common()}),
            "per_tool": table_metadata(per_tool, max_rows=50),
            "preview": table_metadata(
                frame, columns=["conversation_id", "tool_name", "arguments", "result"],
                max_rows=10),
            "dagster/column_schema": TOOL_EXAMPLES.column_schema(),
        }
    )
