"""How believable the tool simulator is: ``tool_realism``, a realism discriminator's verdicts.

For a seeded sample of the day's real tool calls (``tool_examples``), the tool simulator
answers each call again, as replay would ask it (the call's schema, the conversation up to the
call, the most similar real calls of the tool from *other* conversations). A second model, the
discriminator, is shown the real and the simulated result in a seeded random order and asked
which one came from the real tool. The share of pairs where it picked the simulated one is the
simulator's realism: 0.5 means it cannot tell them apart, near 0 that simulated results give
themselves away. A pair without a usable verdict (the simulator or the discriminator failed,
or the answer named neither A nor B) is unscored: counted, never counted as either answer.
"""

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource
from pydantic import Field
from scipy import stats

from depsim_assets.endpoints import describe_text
from depsim_assets.metadata import rounded, table_metadata
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
from depsim_assets.partitions import traffic_date
from depsim_assets.replay.tools import ToolCall, ToolResult, simulate_tools
from depsim_assets.resources import RealismDiscriminator, RunBudget, ToolSimulator
from depsim_assets.toolsim import RESULT_SIMULATED, discriminator_messages, parse_verdict
from depsim_assets.warehouse import (
    CONVERSATION_PREFIXES,
    TOOL_EXAMPLES,
    TOOL_REALISM,
    ensure_tables,
    replace_partitions,
)

GROUP = "replay"
KIND = "discriminator"
OVERALL = "overall"
DEFAULT_PAIRS = 200
LEVEL = 0.95
# Why a pair has no verdict (the keys of the metadata's ``unscored_reasons``).
SIMULATOR_FAILED = "simulator_failed"
DISCRIMINATOR_FAILED = "discriminator_failed"
NO_VERDICT = "no_verdict"


class RealismConfig(dg.Config):
    """How many real calls are paired with a simulated result, and the sample's seed."""

    pairs: int = Field(DEFAULT_PAIRS, ge=1, description="Real calls sampled (pairs shown).")
    seed: int = Field(20261201, description="Seed of the sample and of each pair's A/B order.")


def jeffreys(k: int, n: int, level: float = LEVEL) -> tuple[float | None, float | None]:
    """Jeffreys interval of a share ``k / n`` (scipy's beta quantiles; the bound at 0 or 1
    when ``k`` is 0 or ``n``); ``(None, None)`` when ``n`` is 0."""
    if n <= 0:
        return None, None
    tail = (1 - level) / 2
    low = 0.0 if k == 0 else float(stats.beta.ppf(tail, k + 0.5, n - k + 0.5))
    high = 1.0 if k == n else float(stats.beta.ppf(1 - tail, k + 0.5, n - k + 0.5))
    return low, high


def _digest(*parts: object) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()


def sample_calls(examples: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """``n`` of the day's real calls, chosen by a seeded hash of each call's identity (so
    the sample does not depend on row order, and a larger ``n`` keeps the smaller sample)."""
    order = [_digest(seed, cid, index) for cid, index in
             zip(examples["conversation_id"], examples["call_index"], strict=True)]
    ranked = examples.assign(_order=order).sort_values("_order", kind="stable")
    return ranked.head(n).drop(columns="_order").reset_index(drop=True)


def trajectory_to_call(messages: list[dict[str, Any]], call_index: int) -> list[dict[str, Any]]:
    """The conversation up to the assistant message that made the ``call_index``-th tool call
    (that message included): what the real tool had seen when it answered."""
    seen = 0
    for position, msg in enumerate(messages):
        if msg.get("role") != "assistant":
            continue
        seen += len(msg.get("tool_calls") or [])
        if seen > call_index:
            return messages[: position + 1]
    return list(messages)


@dataclass(frozen=True)
class _Ask:
    messages: list[dict[str, Any]]
    key: str


@dataclass
class Verdict:
    """The discriminator's answer to one pair."""

    text: str | None
    error: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0


def _verdict_status(v: Verdict) -> str:
    if v.error is None:
        return OK
    return NOT_ATTEMPTED if v.error.startswith("NotAttempted") else ERROR


VERDICT_CODEC = Codec[Verdict](
    to_payload=lambda v: {"text": v.text, "error": v.error},
    from_payload=lambda p: Verdict(p.get("text"), p.get("error")),
    status=_verdict_status,
    tokens=lambda v: (v.prompt_tokens, v.completion_tokens),
)


async def ask_discriminator(
    warehouse: DuckDBResource,
    discriminator: RealismDiscriminator,
    prompts: list[list[dict[str, Any]]],
    *,
    budget: Budget | None,
    log: Callable[[str], None],
) -> tuple[list[Verdict], int]:
    """One verdict per prompt (cached, kind ``discriminator``), and how many were cached."""
    if not prompts:
        return [], 0
    model = str(discriminator.model)
    params = discriminator.params()
    endpoint = discriminator.endpoint_label()
    asks = [_Ask(m, request_key(endpoint=endpoint, model=model, params=params, messages=m,
                                sample_index=0)) for m in prompts]
    engine = CallEngine(discriminator.limits(), budget=budget)
    client = discriminator.client()
    create: Any = client.chat.completions.create

    async def one(ask: _Ask) -> Verdict:
        result = await engine.call(
            lambda: create(model=model, messages=ask.messages, **params),
            tokens=sum(approx_tokens(str(m["content"])) for m in ask.messages),
            usage=lambda c: (c.usage.prompt_tokens + c.usage.completion_tokens)
            if c.usage else 0,
        )
        completion = result.value
        if result.status != OK or completion is None:
            return Verdict(None, result.error or "discriminator call failed")
        usage = completion.usage
        tokens = (usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0)
        text = completion.choices[0].message.content if completion.choices else None
        return Verdict(text, None, *tokens)

    async with client:
        answers = await answer_all(
            warehouse, asks, kind=KIND, endpoint=endpoint, model=model, key=lambda a: a.key,
            call=one, skipped=lambda _: Verdict(None, BUDGET_REACHED), codec=VERDICT_CODEC,
            engine=engine, log=log)
    return answers.outcomes, answers.cached


def share_rows(pairs: pd.DataFrame, day: str, simulator: str, discriminator: str) -> pd.DataFrame:
    """``tool_realism`` rows: one per tool and one ``overall``, from one row per pair with
    ``tool_name``, ``scored`` and ``judged_real``."""
    groups = [(OVERALL, pairs)] + [
        (str(name), group) for name, group in pairs.groupby("tool_name", sort=True)
    ]
    rows = []
    for name, group in groups:
        scored = int(group["scored"].sum())
        real = int(group["judged_real"].sum())
        low, high = jeffreys(real, scored)
        rows.append({
            "traffic_date": day, "tool_name": name, "pairs": len(group),
            "judged_real": real, "unscored": len(group) - scored,
            "judged_real_share": real / scored if scored else None,
            "share_low": low, "share_high": high,
            "simulator": simulator, "discriminator": discriminator,
        })
    # Float columns even when every share is undefined (no scored pair): typed in the UI.
    return TOOL_REALISM.frame(rows).astype(
        {"judged_real_share": float, "share_low": float, "share_high": float})


def _load(warehouse: DuckDBResource, day: str) -> tuple[pd.DataFrame, dict[str, str]]:
    with warehouse.get_connection() as conn:
        ensure_tables(conn)
        examples = conn.execute(
            f"SELECT * FROM {TOOL_EXAMPLES.name} WHERE traffic_date = ? "
            "ORDER BY conversation_id, call_index", [day]).df()
        prefixes = conn.execute(
            f"SELECT conversation_id, prefix_json FROM {CONVERSATION_PREFIXES.name} "
            "WHERE traffic_date = ?", [day]).fetchall()
    return examples, dict(prefixes)


def measure(
    warehouse: DuckDBResource,
    day: str,
    *,
    simulator: ToolSimulator,
    discriminator: RealismDiscriminator,
    pairs: int,
    seed: int,
    budget: Budget | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The day's ``tool_realism`` rows and one row per pair (for metadata and tests)."""
    import asyncio

    examples, prefixes = _load(warehouse, day)
    chosen = sample_calls(examples, pairs, seed)
    calls = []
    for rec in chosen.to_dict("records"):
        messages = json.loads(prefixes.get(rec["conversation_id"]) or "[]")
        schema = json.loads(rec["schema_json"]) if rec["schema_json"] else None
        calls.append(ToolCall(rec["conversation_id"], day, rec["tool_name"], rec["arguments"],
                              schema, trajectory_to_call(messages, int(rec["call_index"]))))

    async def run() -> tuple[list[ToolResult], list[Verdict], list[str | None]]:
        simulated = await simulate_tools(warehouse, simulator, calls, budget=budget, log=log)
        prompts, where = [], []
        for i, (rec, sim) in enumerate(zip(chosen.to_dict("records"), simulated, strict=True)):
            if sim.source != RESULT_SIMULATED:
                continue
            real_first = random.Random(_digest(seed, rec["conversation_id"],
                                               rec["call_index"], "order")).random() < 0.5
            a, b = (rec["result"], sim.text) if real_first else (sim.text, rec["result"])
            prompts.append(discriminator_messages(name=rec["tool_name"],
                                                  arguments=rec["arguments"],
                                                  result_a=a, result_b=b))
            where.append((i, "B" if real_first else "A"))
        answered, _ = await ask_discriminator(warehouse, discriminator, prompts,
                                              budget=budget, log=log)
        # A pair whose simulation failed was never shown: no verdict, no letter.
        verdicts = [Verdict(None, None)] * len(calls)
        letters: list[str | None] = [None] * len(calls)
        for (i, letter), verdict in zip(where, answered, strict=True):
            verdicts[i], letters[i] = verdict, letter
        return simulated, verdicts, letters

    simulated, verdicts, letters = asyncio.run(run())
    rows = []
    for rec, sim, verdict, letter in zip(chosen.to_dict("records"), simulated, verdicts, letters,
                                         strict=True):
        picked = parse_verdict(verdict.text) if verdict.error is None else None
        if sim.source != RESULT_SIMULATED:
            reason = SIMULATOR_FAILED
        elif verdict.error is not None:
            reason = DISCRIMINATOR_FAILED
        elif picked is None:
            reason = NO_VERDICT
        else:
            reason = None
        rows.append({
            "conversation_id": rec["conversation_id"], "call_index": int(rec["call_index"]),
            "tool_name": rec["tool_name"], "arguments": rec["arguments"],
            "real": rec["result"], "simulated": sim.text if reason != SIMULATOR_FAILED else None,
            "simulated_as": letter, "verdict": picked, "scored": reason is None,
            "judged_real": reason is None and picked == letter, "unscored_reason": reason,
            "error": describe_text(sim.error or verdict.error or "", 300) or None,
        })
    frame = pd.DataFrame(rows, columns=pd.Index([
        "conversation_id", "call_index", "tool_name", "arguments", "real", "simulated",
        "simulated_as", "verdict", "scored", "judged_real", "unscored_reason", "error"]))
    table = share_rows(frame, day, simulator.label(), discriminator.label())
    return table, frame


@dg.asset(
    partitions_def=traffic_date,
    group_name=GROUP,
    deps=["tool_examples"],  # by key: stages share tables, not code
    code_version="realism-v1",
    metadata={"dagster/column_schema": TOOL_REALISM.column_schema()},
)
def tool_realism(
    context: dg.AssetExecutionContext,
    config: RealismConfig,
    warehouse: DuckDBResource,
    tool_simulator: ToolSimulator,
    realism_discriminator: RealismDiscriminator,
    budget: RunBudget,
) -> dg.MaterializeResult:
    """One row per tool, and one ``overall``: the share of simulated tool results a realism
    discriminator judged to be the real one, with a Jeffreys interval.

    A seeded sample of the day's real calls (``tool_examples``) is simulated again (examples
    from other conversations only) and each (real, simulated) pair is shown in a seeded random
    order; unscored pairs are counted apart. 0.5 is indistinguishable from the real tool.
    """
    day = context.partition_key
    table, frame = measure(
        warehouse, day, simulator=tool_simulator, discriminator=realism_discriminator,
        pairs=config.pairs, seed=config.seed, budget=budget.for_run(context),
        log=context.log.info)
    with warehouse.get_connection() as conn:
        # One transaction: the day's verdicts are replaced whole or not at all.
        replace_partitions(conn, [(TOOL_REALISM, table, {"traffic_date": day})])
    if frame.empty:
        context.log.warning(f"no tool_examples for {day}: nothing to measure")
    overall = table.loc[table["tool_name"] == OVERALL].iloc[0]
    per_tool = table.loc[table["tool_name"] != OVERALL]
    reasons = frame["unscored_reason"].dropna().value_counts()
    examples = _example_pairs(frame)
    return dg.MaterializeResult(
        metadata={
            # The overall share and its interval first: the number a person looks for.
            "judged_real_share": rounded(overall["judged_real_share"]),
            "share_low": rounded(overall["share_low"]),
            "share_high": rounded(overall["share_high"]),
            "pairs": int(overall["pairs"]),
            "scored": int(overall["pairs"] - overall["unscored"]),
            "unscored": int(overall["unscored"]),
            "unscored_reasons": dg.MetadataValue.json({str(k): int(v)
                                                       for k, v in reasons.items()}),
            "dagster/row_count": len(table),
            "per_tool": table_metadata(
                per_tool, columns=["tool_name", "pairs", "judged_real", "unscored",
                                   "judged_real_share", "share_low", "share_high"],
                max_rows=50),
            "example_pairs": table_metadata(
                examples, columns=["tool_name", "arguments", "real", "simulated",
                                   "simulated_as", "verdict"]),
            "simulator": tool_simulator.label(),
            "discriminator": realism_discriminator.label(),
            "dagster/column_schema": TOOL_REALISM.column_schema(),
        }
    )


def _example_pairs(frame: pd.DataFrame, n: int = 3) -> pd.DataFrame:
    """A few scored pairs to read: one judged real and one caught, when there are both."""
    scored = frame.loc[frame["scored"].astype(bool)]
    judged = scored["judged_real"].astype(bool)
    fooled = scored.loc[judged].head(1)
    caught = scored.loc[~judged].head(1)
    rest = scored.drop(index=[*fooled.index, *caught.index]).head(n - len(fooled) - len(caught))
    return pd.DataFrame(pd.concat([fooled, caught, rest]).head(n))
