"""Dagster wrapper of the judging stage: grade every reply on every category."""

import asyncio
import hashlib
import json
import time

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from depsim_assets.judging.judge import GradeOutcome, grade_reply
from depsim_assets.judging.taxonomy import Taxonomy, load_taxonomy
from depsim_assets.metadata import md_table
from depsim_assets.partitions import candidate_by_date, split_key
from depsim_assets.replay.assets import candidate_completions
from depsim_assets.replay.engine import run_bounded
from depsim_assets.resources import JudgeEndpoint
from depsim_assets.warehouse import (
    CANDIDATE_COMPLETIONS,
    CONVERSATION_PREFIXES,
    JUDGE_GRADES,
    read_partition,
    replace_partitions,
)

GROUP = "judging"


def grades_code_version() -> str:
    """Taxonomy and judge-prompt versions: changing either marks grades stale in the UI."""
    tax = load_taxonomy()
    return f"tax-{tax.version}.prompt-{tax.judge_prompt_version}"


def grade_rows(
    completion: dict, outcome: GradeOutcome, taxonomy: Taxonomy, judge: JudgeEndpoint
) -> list[dict]:
    """Twenty rows for one completion; every one explicit, scored or not."""
    rows = []
    for category in taxonomy.categories:
        grade = outcome.grades.get(category.id)
        scored = outcome.status == "scored" and grade is not None
        rows.append(
            {
                "grade_id": hashlib.sha256(
                    f"{completion['completion_id']}|{category.id}".encode()
                ).hexdigest()[:24],
                "completion_id": completion["completion_id"],
                "candidate": completion["candidate"],
                "traffic_date": completion["traffic_date"],
                "conversation_id": completion["conversation_id"],
                "sample_index": int(completion["sample_index"]),
                "category": category.id,
                "family": category.family,
                "severity": grade.severity if scored else None,
                "flagged": bool(grade.severity >= judge.flag_threshold) if scored else None,
                "evidence": grade.evidence if scored else None,
                "rationale": grade.rationale if scored else None,
                "other_concern": outcome.other_concern,
                "status": "scored" if scored else "unscored",
                "unscored_reason": None if scored else (outcome.unscored_reason or "missing"),
                "flag_threshold": judge.flag_threshold,
                "taxonomy_version": taxonomy.version,
                "judge_prompt_version": taxonomy.judge_prompt_version,
                "judge_model": judge.model,
                "judge_endpoint": judge.endpoint_label(),
            }
        )
    return rows


@dg.asset(
    partitions_def=candidate_by_date,
    group_name=GROUP,
    deps=[candidate_completions],
    code_version=grades_code_version(),
    metadata={"dagster/column_schema": JUDGE_GRADES.column_schema()},
)
def judge_grades(
    context: dg.AssetExecutionContext, warehouse: DuckDBResource, judge: JudgeEndpoint
) -> dg.MaterializeResult:
    """One row per reply x category: severity 0-4, flagged, evidence, rationale, versions.

    A reply the judge could not grade (failed call, refusal, invalid output) and a completion
    that failed never become clean: they are rows with status ``unscored`` and a reason.
    """
    candidate, day = split_key(context)
    taxonomy = load_taxonomy()
    keys = {"candidate": candidate, "traffic_date": day}
    with warehouse.get_connection() as conn:
        completions = read_partition(conn, CANDIDATE_COMPLETIONS, keys)
        prefixes = read_partition(conn, CONVERSATION_PREFIXES, {"traffic_date": day})
    if completions.empty:
        raise dg.Failure(f"no candidate_completions for {candidate}|{day}: replay it first")
    prefix_of = dict(zip(prefixes["conversation_id"], prefixes["prefix_json"], strict=True))
    records = completions.to_dict("records")
    started = time.perf_counter()
    total = len(records)
    step = max(1, total // 10)

    def progress(done: int) -> None:
        if done % step == 0 or done == total:
            context.log.info(f"judge {candidate} {day}: {done}/{total}")

    async def grade_all() -> list[GradeOutcome]:
        client = judge.client()

        async def one(rec: dict) -> GradeOutcome:
            if rec["status"] != "ok" or rec["reply"] is None:
                return GradeOutcome(status="unscored", unscored_reason="completion_failed")
            return await grade_reply(
                client,
                taxonomy,
                judge_model=judge.model,
                prefix=json.loads(prefix_of.get(rec["conversation_id"], "[]")),
                reply=rec["reply"],
                reasoning=rec["reasoning"],
                tool_trace=json.loads(rec["tool_trace"] or "[]"),
                flag_threshold=judge.flag_threshold,
            )

        async with client:
            return await run_bounded(
                records, one, concurrency=judge.max_concurrency, on_done=progress
            )

    outcomes = asyncio.run(grade_all())
    rows = [
        row
        for rec, out in zip(records, outcomes, strict=True)
        for row in grade_rows(rec, out, taxonomy, judge)
    ]
    frame = pd.DataFrame(rows, columns=JUDGE_GRADES.column_names)
    with warehouse.get_connection() as conn:
        replace_partitions(conn, [(JUDGE_GRADES, frame, keys)])
    unscored = [o for o in outcomes if o.status == "unscored"]
    reasons = pd.Series([o.unscored_reason.split(":")[0] for o in unscored]).value_counts()
    flagged = frame[frame["flagged"].fillna(False).astype(bool)]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(frame),
            "dagster/column_schema": JUDGE_GRADES.column_schema(),
            "replies": total,
            "replies_unscored": len(unscored),
            "unscored_reasons": dg.MetadataValue.json({str(k): int(v) for k, v in reasons.items()}),
            "flags": len(flagged),
            "judge_tokens_in": sum(o.prompt_tokens for o in outcomes),
            "judge_tokens_out": sum(o.completion_tokens for o in outcomes),
            "taxonomy_version": taxonomy.version,
            "judge_prompt_version": taxonomy.judge_prompt_version,
            "judge_model": judge.model,
            "wall_s": round(time.perf_counter() - started, 2),
            "flags_preview": dg.MetadataValue.md(
                md_table(
                    flagged,
                    columns=["conversation_id", "category", "severity", "evidence"],
                    max_rows=15,
                )
            ),
        }
    )
