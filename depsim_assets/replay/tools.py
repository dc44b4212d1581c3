"""Tool-simulator calls: a result for every tool call the candidate makes during replay.

Each call is answered by the tool-simulator model (:class:`~depsim_assets.resources.
ToolSimulator`), prompted (:func:`depsim_assets.toolsim.simulator_messages`) with the tool's
schema, the trajectory so far and the ``k`` most similar real calls of the same tool from
``tool_examples``. Similar means TF-IDF cosine over the arguments text (scikit-learn), among
real calls of traffic days up to the call's own day and never from the call's own
conversation: the conversation's own later results would leak the answer, and a later day's
traffic did not exist when the call was made.

Every call goes through :func:`~depsim_assets.models.answer_all` (kind ``tool_sim``), so it is
cached by its content and a rerun asks only what was never answered. A failure is a result
(``source = simulator_error``), never an exception: the loop records it and the turn is not
scored clean.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from dagster_duckdb import DuckDBResource
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics.pairwise import linear_kernel

from depsim_assets.endpoints import describe_text
from depsim_assets.models import (
    BUDGET_REACHED,
    ERROR,
    NOT_ATTEMPTED,
    OK,
    Budget,
    CallEngine,
    Codec,
    answer_all,
    approx_tokens,
    request_key,
)
from depsim_assets.toolsim import (
    RESULT_SIMULATED,
    RESULT_SIMULATOR_ERROR,
    ToolExample,
    simulator_messages,
)
from depsim_assets.warehouse import ensure_tables

if TYPE_CHECKING:
    import openai

    from depsim_assets.resources import ToolSimulator

KIND = "tool_sim"
# What the candidate is shown when the simulator failed (the trace says why).
FAILED_TEXT = json.dumps({"error": "tool simulator failed"})
# An example's arguments and result are cut to this many characters in the prompt: one huge
# real result (a whole web page) must not crowd out the others or the context window.
MAX_EXAMPLE_CHARS = 2000
# Words, numbers and identifiers, single characters included (``{"n": 3}`` has a 3 to match).
_TOKEN_PATTERN = r"(?u)\b\w+\b"


@dataclass(frozen=True)
class ToolCall:
    """One tool call of the candidate, with what the simulator needs to answer it."""

    conversation_id: str
    traffic_date: str
    name: str
    arguments: str  # JSON text as the candidate sent it
    schema: dict[str, Any] | None  # from tools_json, None when unknown
    trajectory: list[dict[str, Any]]  # messages so far, the assistant call message included


@dataclass
class ToolResult:
    """The simulated result of one call (or why there is none)."""

    text: str  # what the candidate is shown as the tool message
    source: str  # toolsim.RESULT_SIMULATED or RESULT_SIMULATOR_ERROR
    error: str | None
    prompt_tokens: int
    completion_tokens: int


def _status(result: ToolResult) -> str:
    if result.error is None:
        return OK
    return NOT_ATTEMPTED if result.error.startswith("NotAttempted") else ERROR


TOOL_RESULT_CODEC = Codec[ToolResult](
    to_payload=lambda r: {"text": r.text, "source": r.source, "error": r.error},
    from_payload=lambda p: ToolResult(
        text=str(p.get("text", "")), source=str(p.get("source", RESULT_SIMULATED)),
        error=p.get("error"), prompt_tokens=0, completion_tokens=0),
    status=_status,
    tokens=lambda r: (r.prompt_tokens, r.completion_tokens),
)


def failed(error: str, prompt_tokens: int = 0, completion_tokens: int = 0) -> ToolResult:
    """The result of a call the simulator could not answer."""
    return ToolResult(FAILED_TEXT, RESULT_SIMULATOR_ERROR, error, prompt_tokens,
                      completion_tokens)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_EXAMPLE_CHARS else text[: MAX_EXAMPLE_CHARS - 1] + "…"


def load_examples(warehouse: DuckDBResource, names: Sequence[str], up_to: str) -> pd.DataFrame:
    """Real calls of the tools ``names`` from ``tool_examples`` of days up to ``up_to``,
    in a fixed order (newest day first), so that ties in similarity break the same way."""
    with warehouse.get_connection() as conn:
        ensure_tables(conn)
        return conn.execute(
            "SELECT traffic_date, conversation_id, call_index, tool_name, arguments, result "
            "FROM tool_examples WHERE traffic_date <= ? "
            "AND tool_name IN (SELECT unnest(?::VARCHAR[])) "  # read by DuckDB and Postgres
            "ORDER BY traffic_date DESC, conversation_id, call_index",
            [up_to, sorted(set(names))],
        ).df()


def nearest_examples(
    pool: pd.DataFrame, *, name: str, traffic_date: str,
    queries: Sequence[tuple[str, str]], k: int,
) -> list[list[ToolExample]]:
    """For each ``(conversation_id, arguments)`` of ``queries`` (calls of tool ``name`` on
    ``traffic_date``): the ``k`` real calls of ``pool`` most similar by TF-IDF cosine over the
    arguments, from days up to ``traffic_date``, never from that conversation.

    The vectorizer is fitted once on the tool's calls of days up to ``traffic_date`` (every
    conversation's included), so a call's examples depend only on the call and the warehouse,
    not on which other calls were asked together (the cache key stays stable).
    """
    if k <= 0 or pool.empty or not queries:
        return [[] for _ in queries]
    rows = pool[(pool["tool_name"] == name) & (pool["traffic_date"] <= traffic_date)]
    rows = rows.reset_index(drop=True)
    if rows.empty:
        return [[] for _ in queries]
    corpus = ["" if a is None else str(a) for a in rows["arguments"].tolist()]
    try:
        vectorizer = TfidfVectorizer(token_pattern=_TOKEN_PATTERN, lowercase=True)
        matrix = vectorizer.fit_transform(corpus)
        scores = linear_kernel(vectorizer.transform([q for _, q in queries]), matrix)
    except ValueError:
        # No word in any call (every argument list is "{}"): nothing ranks above another.
        scores = np.zeros((len(queries), len(rows)))
    conversations = np.asarray(rows["conversation_id"].tolist(), dtype=object)
    out = []
    for (conversation_id, _), row_scores in zip(queries, scores, strict=True):
        eligible = conversations != conversation_id
        take = min(k, int(eligible.sum()))
        if take == 0:
            out.append([])
            continue
        masked = np.where(eligible, row_scores, -np.inf)
        # The k-th best score, then every call at least that good (ties included), ordered
        # best first and, among equals, by position (newest day first): a full sort of a
        # large tool's calls per query was half the time.
        floor = np.partition(masked, len(masked) - take)[len(masked) - take]
        best = np.flatnonzero(masked >= floor)
        picked = [int(i) for i in best[np.lexsort((best, -masked[best]))][:take]]
        out.append([ToolExample(_cut(str(rows.at[i, "arguments"] or "")),
                                _cut(str(rows.at[i, "result"] or ""))) for i in picked])
    return out


def examples_for(
    warehouse: DuckDBResource, calls: Sequence[ToolCall], k: int
) -> list[list[ToolExample]]:
    """The examples each call's prompt shows (see :func:`nearest_examples`)."""
    if not calls or k <= 0:
        return [[] for _ in calls]
    pool = load_examples(warehouse, [c.name for c in calls], max(c.traffic_date for c in calls))
    out: list[list[ToolExample]] = [[] for _ in calls]
    groups: dict[tuple[str, str], list[int]] = {}
    for i, call in enumerate(calls):
        groups.setdefault((call.name, call.traffic_date), []).append(i)
    for (name, day), indexes in groups.items():
        found = nearest_examples(
            pool, name=name, traffic_date=day, k=k,
            queries=[(calls[i].conversation_id, calls[i].arguments) for i in indexes])
        for i, examples in zip(indexes, found, strict=True):
            out[i] = examples
    return out


@dataclass(frozen=True)
class _Request:
    messages: list[dict[str, Any]]
    key: str


async def _simulate_one(
    client: openai.AsyncOpenAI, engine: CallEngine, model: str, params: dict[str, Any],
    messages: list[dict[str, Any]],
) -> ToolResult:
    create: Any = client.chat.completions.create

    def attempt() -> Any:
        return create(model=model, messages=messages, **params)

    result = await engine.call(
        attempt,
        tokens=sum(approx_tokens(str(m["content"])) for m in messages),
        usage=lambda c: (c.usage.prompt_tokens + c.usage.completion_tokens) if c.usage else 0,
    )
    if result.status == NOT_ATTEMPTED:
        return failed(result.error or BUDGET_REACHED)
    completion = result.value
    if result.status != OK or completion is None:
        return failed(result.error or "tool simulator call failed")
    usage = completion.usage
    tokens = (usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0)
    choice = completion.choices[0] if completion.choices else None
    text = choice.message.content if choice is not None else None
    if choice is None or not text:
        return failed("the tool simulator returned no result text", *tokens)
    if choice.finish_reason == "content_filter":
        return failed("the tool simulator's answer was filtered", *tokens)
    return ToolResult(text, RESULT_SIMULATED, None, *tokens)


async def simulate_tools(
    warehouse: DuckDBResource,
    simulator: ToolSimulator,
    calls: list[ToolCall],
    *,
    budget: Budget | None,
    log: Callable[[str], None],
) -> list[ToolResult]:
    """One result per call, in order: from the response cache, else from the simulator.

    Never raises for a failed call (or a warehouse without ``tool_examples`` rows): such a
    call's result has ``source = simulator_error`` and says why in ``error``.
    """
    if not calls:
        return []
    k = simulator.examples_k if simulator.examples_k is not None else 3
    try:
        examples = examples_for(warehouse, calls, k)
    except Exception as exc:  # noqa: BLE001 - a result per call is the contract, never a raise
        reason = describe_text(f"{type(exc).__name__}: {exc}")
        log(f"tool simulator: reading tool_examples failed ({reason}); no examples shown")
        examples = [[] for _ in calls]
    model = str(simulator.model)
    params = simulator.params()
    endpoint = simulator.endpoint_label()
    requests = []
    for call, shown in zip(calls, examples, strict=True):
        messages = simulator_messages(name=call.name, schema=call.schema,
                                      arguments=call.arguments, trajectory=call.trajectory,
                                      examples=shown)
        requests.append(_Request(messages, request_key(
            endpoint=endpoint, model=model, params=params, messages=messages, sample_index=0)))
    try:
        client = simulator.client()
    except Exception as exc:  # noqa: BLE001 - e.g. the key's variable is unset: say so per call
        reason = describe_text(f"{type(exc).__name__}: {exc}")
        log(f"tool simulator unavailable: {reason}")
        return [failed(reason) for _ in calls]
    engine = CallEngine(simulator.limits(), budget=budget)

    def announce(cached: int, pending: int) -> None:
        log(f"tool simulator: {cached} results cached, {pending} to simulate")

    try:
        async with client:
            answers = await answer_all(
                warehouse, requests, kind=KIND, endpoint=endpoint, model=model,
                key=lambda r: r.key,
                call=lambda r: _simulate_one(client, engine, model, params, r.messages),
                skipped=lambda _: failed(BUDGET_REACHED), codec=TOOL_RESULT_CODEC,
                engine=engine, on_lookup=announce, log=log)
    except Exception as exc:  # noqa: BLE001 - the warehouse failed mid-way: fail these calls
        reason = describe_text(f"{type(exc).__name__}: {exc}")
        log(f"tool simulator: {reason}")
        return [failed(reason) for _ in calls]
    return answers.outcomes
