"""Dagster wrapper of the judging stage: grade every reply on every category."""

import asyncio
import hashlib
import json
import os
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from depsim_assets.config import env_threshold
from depsim_assets.endpoints import EndpointError, resolve_base_url
from depsim_assets.judging.agreement import DEFAULT_BOOTSTRAP, agreement, read_labels
from depsim_assets.judging.judge import (
    AUTO,
    CategoryGrade,
    GradeOutcome,
    StructuredOutput,
    grade_reply,
    render_transcript,
    system_prompt,
    verify_evidence,
)
from depsim_assets.judging.monitors import (
    LAYOUTS,
    Monitor,
    fit_layout,
    grade_with_monitors,
    plan_monitors,
)
from depsim_assets.judging.novel import DEFAULT_DISTANCE, novel_clusters
from depsim_assets.measurement import assess
from depsim_assets.metadata import rounded, table_metadata
from depsim_assets.models import (
    Answers,
    CallEngine,
    Codec,
    Limits,
    TokenCounter,
    answer_all,
    progress_reporter,
    recall,
    remember,
    request_key,
)
from depsim_assets.partitions import PRODUCTION, candidate_by_date, split_key
from depsim_assets.resources import JudgeEndpoint, judge_setting_raw
from depsim_assets.taxonomy import Taxonomy, load_taxonomy
from depsim_assets.warehouse import (
    CANDIDATE_COMPLETIONS,
    CONVERSATION_PREFIXES,
    JUDGE_AGREEMENT,
    JUDGE_GRADES,
    NOVEL_BEHAVIORS,
    ensure_tables,
    read_partition,
    replace_partitions,
)

GROUP = "judging"
T = TypeVar("T")


def _reason(outcome: GradeOutcome, category_id: str) -> str:
    if outcome.status == "scored":
        # Scored overall but this category missing: only a per-family monitor can do that.
        return outcome.category_reasons.get(category_id, "category_missing_from_judge_output")
    return outcome.unscored_reason or "unknown"


class JudgeConfig(dg.Config):
    """What the judge sees and how many calls make a grade (run config of judge_grades)."""

    prefix_token_budget: int = 6000
    include_reasoning: bool = True
    validation_attempts: int = 2
    # Layout of the judge calls: auto follows the judge resource's ``layout`` (itself auto by
    # default: the fewest calls that fit its context window); all, family or behaviour force.
    monitors: str = "auto"
    monitor_models: dict[str, str] = {}
    k_judges: int = 1


def grades_code_version() -> str:
    """Taxonomy and judge-prompt versions and the judge model (as configured when the code
    location loads): changing any marks grades stale in the UI."""
    tax = load_taxonomy()
    identity = f"{judge_setting_raw('base_url')}|{judge_setting_raw('model')}"
    judge = hashlib.sha256(identity.encode()).hexdigest()[:8]
    return f"tax-{tax.version}.prompt-{tax.judge_prompt_version}.judge-{judge}"


def _trace(completion: dict) -> list:
    try:
        trace = json.loads(completion.get("tool_trace") or "[]")
    except (TypeError, ValueError):
        return []
    return trace if isinstance(trace, list) else []


def judge_request_key(
    completion: dict,
    prefix_json: str | None,
    *,
    taxonomy: Taxonomy,
    judge: JudgeEndpoint,
    config: JudgeConfig,
    layout: str,
) -> str:
    """Content key of one reply's whole verdict: everything that decides it (judge endpoint
    and models, taxonomy and prompt versions, grading settings, and the graded text)."""
    return request_key(
        endpoint=judge.endpoint_label(),
        model=_resolved(judge.model),
        params={
            "kind": "judge",
            "taxonomy_version": taxonomy.version,
            "judge_prompt_version": taxonomy.judge_prompt_version,
            "layout": layout,
            "monitor_models": dict(sorted(config.monitor_models.items())),
            "context_window": judge.context_window,
            "structured_output": judge.structured_output,
            "max_output_tokens": judge.max_output_tokens,
            "k_judges": config.k_judges,
            "flag_threshold": judge.flag_threshold,
            "prefix_token_budget": config.prefix_token_budget,
            "include_reasoning": config.include_reasoning,
            "validation_attempts": config.validation_attempts,
        },
        messages={"prefix": prefix_json, "reply": completion["reply"],
                  "reasoning": completion["reasoning"], "tool_trace": completion["tool_trace"]},
        sample_index=int(completion["sample_index"]),
    )


def outcome_payload(outcome: GradeOutcome) -> dict:
    """A verdict as stored in the response cache (JSON-ready)."""
    payload = dict(vars(outcome))
    payload["grades"] = {cid: g.model_dump() for cid, g in outcome.grades.items()}
    return payload


def outcome_from_payload(payload: dict) -> GradeOutcome:
    """The verdict a cached payload holds."""
    grades = {cid: CategoryGrade.model_validate(g) for cid, g in payload["grades"].items()}
    return GradeOutcome(**{**payload, "grades": grades})


# How a verdict is stored in the response cache: scored ones are reused, unscored ones kept
# for the record and asked again; one that made no request (known not to fit) is not kept.
VERDICT_CODEC: Codec[GradeOutcome] = Codec(
    to_payload=outcome_payload,
    from_payload=outcome_from_payload,
    status=lambda out: None if not out.calls else "ok" if out.status == "scored" else "error",
    tokens=lambda out: (out.prompt_tokens, out.completion_tokens),
)


def _resolved(value: T | None) -> T:
    """A judge setting as resolved: JudgeEndpoint's validator fills every field (from its
    environment variable or the built-in default) before any step sees it."""
    assert value is not None, "judge setting unresolved"
    return value


def _ungradable(completion: dict, prefix_of: dict) -> GradeOutcome | None:
    """The unscored outcome of a reply there is nothing to grade for (None: grade it)."""
    # A step_limit turn is graded too: what the candidate did up to its limit is in the trace.
    if completion["status"] not in ("ok", "step_limit") or completion["reply"] is None:
        error = str(completion.get("error") or "no reply").split(":")[0]
        return GradeOutcome(status="unscored", unscored_reason=f"completion_failed: {error}")
    if completion["conversation_id"] not in prefix_of:
        return GradeOutcome(status="unscored", unscored_reason="prefix_missing")
    return None


def grade_rows(
    completion: dict,
    outcome: GradeOutcome,
    taxonomy: Taxonomy,
    judge: JudgeEndpoint,
    *,
    flag_threshold: int | None = None,
    models: dict[str, str] | None = None,
) -> list[dict]:
    """Twenty rows for one completion; every one explicit, scored or not.

    A grade of severity >= 1 has its evidence looked up in the reply, its reasoning and its
    tool trace; a flag whose quote is nowhere is kept, with ``evidence_verified`` false, so
    the share of ungrounded flags is visible rather than silently dropped.
    """
    threshold = _resolved(judge.flag_threshold) if flag_threshold is None else flag_threshold
    trace = _trace(completion)
    rows = []
    for category in taxonomy.categories:
        grade = outcome.grades.get(category.id) if outcome.status == "scored" else None
        scored = grade is not None
        source = verified = None
        if grade is not None and grade.severity >= 1:
            source = verify_evidence(
                grade.evidence,
                reply=completion.get("reply") or "",
                reasoning=completion.get("reasoning"),
                tool_trace=trace,
            )
            verified = source is not None
        votes = outcome.votes.get(category.id) if scored else None
        monitor = outcome.monitors.get(category.id, "all")
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
                "severity": grade.severity if grade is not None else None,
                "flagged": bool(grade.severity >= threshold) if grade is not None else None,
                "evidence": grade.evidence if grade is not None else None,
                "evidence_verified": verified,
                "evidence_source": source,
                "rationale": grade.rationale if grade is not None else None,
                "other_concern": outcome.other_concern,
                "status": "scored" if scored else "unscored",
                "unscored_reason": None if scored else _reason(outcome, category.id),
                "flag_threshold": threshold,
                "judge_votes": outcome.judge_votes,
                "judge_agreement": votes,
                "monitor": monitor,
                "judge_layout": outcome.layout,
                "structured_output": outcome.structured_output,
                "taxonomy_version": taxonomy.version,
                "judge_prompt_version": taxonomy.judge_prompt_version,
                "judge_model": (models or {}).get(monitor, judge.model),
                "judge_endpoint": judge.endpoint_label(),
            }
        )
    return rows


@dg.asset(
    partitions_def=candidate_by_date,
    group_name=GROUP,
    deps=["candidate_completions"],  # by key: stages share tables, not code
    code_version=grades_code_version(),
    metadata={"dagster/column_schema": JUDGE_GRADES.column_schema()},
)
def judge_grades(
    context: dg.AssetExecutionContext,
    config: JudgeConfig,
    warehouse: DuckDBResource,
    judge: JudgeEndpoint,
) -> dg.MaterializeResult:
    """One row per reply x category: severity 0-4, flagged, evidence, rationale, versions.

    A reply the judge could not grade (failed call, refusal, invalid output) and a completion
    that failed never become clean: they are rows with status ``unscored`` and a reason.
    Every flag's evidence is looked up in the reply, reasoning and tool trace
    (``evidence_verified``); the flag threshold and both versions are on every row.
    """
    candidate, day = split_key(context)
    taxonomy = load_taxonomy()
    layout = config.monitors if config.monitors != AUTO else judge.layout
    if layout != AUTO and layout not in LAYOUTS:
        raise dg.Failure(f"judge layout {layout!r}: expected auto or one of {list(LAYOUTS)}")
    # Every monitor any layout may use, by name: the model stored on each grade row.
    monitor_models = {
        m.name: m.model
        for mode in LAYOUTS
        for m in plan_monitors(taxonomy, mode=mode, default_model=_resolved(judge.model),
                               models=config.monitor_models)
    }
    keys = {"candidate": candidate, "traffic_date": day}
    capability_key = structured_output_key(judge)
    with warehouse.get_connection() as conn:
        completions = read_partition(conn, CANDIDATE_COMPLETIONS, keys)
        prefixes = read_partition(conn, CONVERSATION_PREFIXES, {"traffic_date": day})
    if completions.empty:
        raise dg.Failure(f"no candidate_completions for {candidate}|{day}: replay it first")
    known = recall(warehouse, capability_key)
    try:
        structured = StructuredOutput(
            _resolved(judge.structured_output),
            known=known.get("structured_output") if judge.structured_output == AUTO else None,
        )
    except ValueError as exc:
        raise dg.Failure(str(exc)) from None
    prefix_of = dict(zip(prefixes["conversation_id"], prefixes["prefix_json"], strict=True))
    records = completions.to_dict("records")
    started = time.perf_counter()
    total = len(records)
    request_keys = [
        judge_request_key(rec, prefix_of.get(rec["conversation_id"]), taxonomy=taxonomy,
                          judge=judge, config=config, layout=layout)
        for rec in records
    ]
    # Replies graded without a call: a failed completion, a prefix not found.
    outcomes: list[GradeOutcome | None] = [_ungradable(rec, prefix_of) for rec in records]
    to_grade = [i for i, out in enumerate(outcomes) if out is None]
    engine = CallEngine(
        Limits(max_concurrency=_resolved(judge.max_concurrency),
               max_retries=_resolved(judge.max_retries)),
        progress=progress_reporter(context.log, f"judge {candidate} {day}"),
    )
    counter = TokenCounter(_tokenizer_url(judge) if judge.context_window else None,
                           timeout_s=min(_resolved(judge.timeout_s), 30.0))

    def announce(cached: int, pending: int) -> None:
        context.log.info(f"judge {candidate} {day}: {cached} verdicts cached, "
                         f"{total - cached} to grade; structured output {structured.mode}"
                         f"{'' if structured.settled else ' (to be negotiated)'}, "
                         f"layout {layout}")

    async def grade_all() -> Answers[GradeOutcome]:
        client = judge.client()

        async def one(index: int) -> GradeOutcome:
            rec = records[index]
            prefix = json.loads(prefix_of[rec["conversation_id"]])
            reasoning = rec["reasoning"] if config.include_reasoning else None

            def transcript(budget: int | None) -> str:
                return render_transcript(prefix=prefix, reply=rec["reply"], reasoning=reasoning,
                                         tool_trace=_trace(rec), fence_token="0" * 16,
                                         prefix_token_budget=budget)

            fit = await fit_layout(
                taxonomy,
                layout=layout,
                context_window=judge.context_window,
                count=counter.count,
                system_prompt=lambda ids: system_prompt(
                    taxonomy, fence_token="0" * 16, flag_threshold=_resolved(judge.flag_threshold),
                    categories=ids,
                    # Until the mode is settled, size for the largest prompt (the schema in it).
                    structured_output=structured.mode if structured.settled else "prompt"),
                transcript=transcript,
                prefix_token_budget=config.prefix_token_budget,
                max_output_tokens=judge.max_output_tokens,
                default_model=_resolved(judge.model),
                models=config.monitor_models,
            )
            if fit.layout is None:
                # Known not to fit: no request at all (a server would only refuse it).
                return GradeOutcome(status="unscored", unscored_reason=fit.reason,
                                    structured_output=structured.mode)

            def call(monitor: Monitor):
                return grade_reply(
                    client,
                    taxonomy,
                    judge_model=monitor.model,
                    prefix=prefix,
                    reply=rec["reply"],
                    reasoning=reasoning,
                    tool_trace=_trace(rec),
                    flag_threshold=_resolved(judge.flag_threshold),
                    prefix_token_budget=fit.prefix_token_budget,
                    include_reasoning=config.include_reasoning,
                    attempts=config.validation_attempts,
                    categories=None if monitor.name == "all" else monitor.categories,
                    engine=engine,
                    structured=structured,
                    max_output_tokens=fit.max_output_tokens,
                )

            outcome = await grade_with_monitors(
                call, fit.monitors, k=config.k_judges, threshold=_resolved(judge.flag_threshold)
            )
            outcome.layout = fit.layout
            return outcome

        async with client:
            # A verdict is kept as it arrives; only scored ones are reused by a rerun.
            return await answer_all(
                warehouse, to_grade, kind="judge", endpoint=judge.endpoint_label(),
                model=_resolved(judge.model), key=lambda i: request_keys[i], call=one,
                skipped=lambda _: GradeOutcome(status="unscored",
                                               unscored_reason="not_attempted"),
                codec=VERDICT_CODEC, engine=engine, on_lookup=announce)

    try:
        answers = asyncio.run(grade_all())
    finally:
        if structured.learned:
            # Remembered for later runs: the next one starts in the mode that worked.
            remember(warehouse, capability_key, kind="capability",
                     endpoint=judge.endpoint_label(), model=_resolved(judge.model),
                     payload={"structured_output": structured.mode,
                              "refusals": structured.refusals})
    for index, outcome in zip(to_grade, answers.outcomes, strict=True):
        outcomes[index] = outcome
    n_cached = answers.cached
    graded = [out for out in outcomes if out is not None]
    for outcome in graded:
        # Rows graded without a call (failed completion, not attempted) still say the mode.
        outcome.structured_output = outcome.structured_output or structured.mode
    judge_calls = sum(engine.attempts.values())
    rows = [
        row
        for rec, out in zip(records, graded, strict=True)
        for row in grade_rows(rec, out, taxonomy, judge, models=monitor_models)
    ]
    frame = pd.DataFrame(rows, columns=pd.Index(JUDGE_GRADES.column_names))
    with warehouse.get_connection() as conn:
        replace_partitions(conn, [(JUDGE_GRADES, frame, keys)])
    unscored = [o for o in graded if o.status == "unscored"]
    reasons = pd.Series([(o.unscored_reason or "").split(":")[0] for o in unscored]).value_counts()
    flagged = frame.loc[frame["flagged"].eq(True)]
    called = [o for o in graded if o.calls]
    tokens_in = sum(o.prompt_tokens for o in graded)
    if structured.refusals:
        context.log.warning("structured output refused: " + " | ".join(structured.refusals))
    metadata: dict[str, Any] = {
        # measurement/warning: says when these are not a measurement (measurement.py)
        **assess(frame["judge_model"], [day]).metadata(),
        # Row count and what the grades say first, then the judge's calls and cost, then how
        # it was asked, the versions, and a preview of the flags.
        "dagster/row_count": len(frame),
        "replies": total,
        "replies_unscored": len(unscored),
        "flags": len(flagged),
        "flags_evidence_unverified": int((flagged["evidence_verified"] == False).sum()),  # noqa: E712
        "unscored_reasons": dg.MetadataValue.json({str(k): int(v) for k, v in reasons.items()}),
        "flag_threshold": judge.flag_threshold,
        "judge_calls_made": judge_calls,
        "judge_calls_per_reply": round(sum(o.calls for o in called) / len(called), 2)
        if called else 0.0,
        "judge_input_tokens_per_reply": round(tokens_in / len(called), 1) if called else 0.0,
        "judge_tokens_in": tokens_in,
        "judge_tokens_out": sum(o.completion_tokens for o in graded),
        "judge_cached_tokens": sum(o.cached_tokens for o in graded),
        # Verdicts cut at max_tokens after all severities: graded, findings cut short.
        "verdicts_truncated": sum(o.truncated for o in graded),
        "verdicts_cached": n_cached,
        "attempts_by_outcome": dg.MetadataValue.json(dict(engine.attempts)),
        "wall_s": round(time.perf_counter() - started, 2),
        "judge_model": judge.model,
        "k_judges": config.k_judges,
        "structured_output": structured.mode,
        "structured_output_refusals": dg.MetadataValue.json(structured.refusals),
        "layout": layout,
        "layouts_used": dg.MetadataValue.json(
            dict(Counter(o.layout for o in graded if o.layout))),
        "monitors": ", ".join(sorted({f"{o.layout}" for o in called if o.layout})) or "-",
        "context_window": judge.context_window or 0,
        "token_counts_from": counter.source,
        "taxonomy_version": taxonomy.version,
        "judge_prompt_version": taxonomy.judge_prompt_version,
        "flags_preview": table_metadata(
            flagged,
            columns=["conversation_id", "category", "severity", "evidence"],
            max_rows=15,
        ),
        "dagster/column_schema": JUDGE_GRADES.column_schema(),
    }
    return dg.MaterializeResult(metadata=metadata)


def structured_output_key(judge: JudgeEndpoint) -> str:
    """Cache key of the structured-output mode remembered for this endpoint and model."""
    return request_key(endpoint=judge.endpoint_label(), model=_resolved(judge.model),
                             params={"kind": "structured_output"}, messages=None,
                             sample_index=0)


def _tokenizer_url(judge: JudgeEndpoint) -> str | None:
    try:
        return resolve_base_url(_resolved(judge.base_url))
    except EndpointError:
        return None


class UnscoredShareConfig(dg.Config):
    """Threshold of the unscored-share check (unset: ``$DEPSIM_MAX_UNSCORED_SHARE``, 0.05)."""

    max_unscored_share: float | None = None


def unscored_share(grades: pd.DataFrame) -> tuple[int, int, float]:
    """(replies, unscored replies, share) of one partition's grade rows.

    A reply counts as unscored when any of its category rows is: a rate on that category
    excludes it, so it is missing from the measurement.
    """
    if grades.empty:
        return 0, 0, 0.0
    per_reply = grades.groupby("completion_id")["status"].agg(lambda s: (s != "scored").any())
    replies, unscored = len(per_reply), int(per_reply.sum())
    return replies, unscored, unscored / replies


def _unscored_share_check(
    context: dg.AssetCheckExecutionContext,
    config: UnscoredShareConfig,
    warehouse: DuckDBResource,
) -> dg.AssetCheckResult:
    """Replies the judge could not grade are excluded from rates; too many of them means the
    rates describe a filtered, possibly biased, subset of the traffic."""
    candidate, day = split_key(context)  # type: ignore[arg-type]
    limit = config.max_unscored_share
    if limit is None:
        limit = env_threshold("DEPSIM_MAX_UNSCORED_SHARE", 0.05)
    with warehouse.get_connection() as conn:
        grades = read_partition(conn, JUDGE_GRADES, {"candidate": candidate, "traffic_date": day})
    replies, unscored, share = unscored_share(grades)
    reasons = (
        grades.loc[grades["status"] != "scored"]
        .drop_duplicates(subset=["completion_id"])["unscored_reason"]
        .fillna("unknown")
        .map(lambda r: str(r).split(":")[0])
        .value_counts()
    )
    passed = replies > 0 and share <= limit
    return dg.AssetCheckResult(
        passed=bool(passed),
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"{unscored} of {replies} replies unscored ({share:.1%}); "
            f"threshold {limit:.1%}"
            if replies
            else "no grade rows in this partition"
        ),
        metadata={
            "replies": replies,
            "replies_unscored": unscored,
            "unscored_share": rounded(float(share)),
            "max_unscored_share": rounded(float(limit)),
            "unscored_reasons": dg.MetadataValue.json({str(k): int(v) for k, v in reasons.items()}),
        },
    )


with warnings.catch_warnings():
    # Partitioned asset checks are marked preview in this Dagster release; the check is
    # per partition by nature, so the warning would only repeat on every import.
    warnings.simplefilter("ignore", dg.PreviewWarning)
    judge_grades_unscored_share = dg.asset_check(
        asset=judge_grades,
        name="judge_grades_unscored_share",
        partitions_def=candidate_by_date,
        # Blocking: rates over a partition that is mostly unscored would describe a filtered
        # subset of the traffic, so behavior_rates is not built from it in the same run.
        blocking=True,
        description="Fails a partition whose share of unscored replies passes the threshold.",
    )(_unscored_share_check)


class NovelConfig(dg.Config):
    """Which grades to read and how tight a cluster must be."""

    start_date: str | None = None
    end_date: str | None = None
    distance_threshold: float = DEFAULT_DISTANCE


def read_grade_texts(conn, start: str | None = None, end: str | None = None) -> pd.DataFrame:
    """The grade rows that can carry novel-behaviour text, optionally within a date range."""
    ensure_tables(conn)
    sql = (
        "SELECT candidate, traffic_date, completion_id, status, severity, rationale, "
        "other_concern, taxonomy_version FROM judge_grades "
        "WHERE (other_concern IS NOT NULL OR severity = 1)"
    )
    params: list[str] = []
    if start:
        sql += " AND traffic_date >= ?"
        params.append(start)
    if end:
        sql += " AND traffic_date <= ?"
        params.append(end)
    return conn.execute(sql, params).df()


@dg.asset(
    group_name=GROUP,
    deps=[judge_grades],
    metadata={"dagster/column_schema": NOVEL_BEHAVIORS.column_schema()},
)
def novel_behaviors(
    context: dg.AssetExecutionContext, config: NovelConfig, warehouse: DuckDBResource
) -> dg.MaterializeResult:
    """One row per cluster x candidate of judge notes the taxonomy does not name.

    Clusters the ``other_concern`` texts and the rationales of low-fit (severity 1) grades
    over every graded date (or the configured range): TF-IDF + agglomerative clustering.
    """
    with warehouse.get_connection() as conn:
        grades = read_grade_texts(conn, config.start_date, config.end_date)
    frame = novel_clusters(grades, distance_threshold=config.distance_threshold)
    versions = ",".join(sorted(set(grades["taxonomy_version"].dropna()))) if len(grades) else ""
    frame["taxonomy_version"] = versions
    frame = frame.loc[:, NOVEL_BEHAVIORS.column_names]
    with warehouse.get_connection() as conn:
        replace_partitions(conn, [(NOVEL_BEHAVIORS, frame, {})])
    clusters = frame.drop_duplicates(subset=["cluster_id"])
    preview = frame.assign(examples=frame["examples_json"].map(lambda s: json.loads(s)[0]))
    context.log.info(f"novel_behaviors: {len(clusters)} clusters from {len(grades)} rows")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(frame),
            "dagster/column_schema": NOVEL_BEHAVIORS.column_schema(),
            "clusters": len(clusters),
            "texts": int(clusters["cluster_size"].sum()) if len(clusters) else 0,
            "preview": table_metadata(
                preview,
                columns=["cluster_id", "candidate", "n", "top_terms", "examples"],
                max_rows=20,
            ),
        }
    )


class AgreementConfig(dg.Config):
    """The labels file (default ``$DEPSIM_JUDGE_LABELS``) and whose replies it labels."""

    labels_file: str | None = None
    candidate: str = PRODUCTION
    bootstrap_reps: int = DEFAULT_BOOTSTRAP
    seed: int = 0


def agreement_frame(
    report: dict, *, candidate: str, threshold: int | None, version: str, labels_file: str
) -> pd.DataFrame:
    """The ``judge_agreement`` table rows of an :func:`agreement` report."""
    blocks = [("overall", report["overall"]), *report["per_category"].items()]
    rows = []
    for category, block in blocks:
        row = {c: block.get(c) for c in JUDGE_AGREEMENT.column_names if c in block}
        row.update(
            candidate=candidate,
            category=category,
            bootstrap_reps=None,
            flag_threshold=threshold,
            taxonomy_version=version,
            labels_file=labels_file,
        )
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=JUDGE_AGREEMENT.column_names)


def run_agreement(
    conn, labels_path: str, *, candidate: str, reps: int, seed: int
) -> tuple[dict, pd.DataFrame]:
    """Read labels and grades, compute agreement; (report, table rows). Used by CLI and asset."""
    taxonomy = load_taxonomy()
    labels = read_labels(Path(labels_path), taxonomy.ids)
    # The CLI reads a read-only connection: look for the table rather than create it.
    if not conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'judge_grades'"
    ).fetchone()[0]:
        raise ValueError("no judge_grades in the warehouse: materialize the graph first")
    grades = conn.execute(
        "SELECT conversation_id, traffic_date, sample_index, category, status, flagged, "
        "flag_threshold, taxonomy_version, judge_prompt_version FROM judge_grades "
        "WHERE candidate = ? AND conversation_id IN (SELECT unnest(?::VARCHAR[]))",
        [candidate, sorted(set(labels["conversation_id"]))],
    ).df()
    if grades.empty:
        raise ValueError(
            f"no judge_grades of candidate {candidate!r} for any conversation in {labels_path}"
        )
    versions = grades[["taxonomy_version", "judge_prompt_version"]].drop_duplicates()
    if len(versions) > 1:
        found = ", ".join(f"{t}/{p}" for t, p in versions.itertuples(index=False))
        raise ValueError(
            f"grades of {candidate!r} for these labels mix taxonomy/prompt versions ({found}); "
            "re-grade them under one version"
        )
    thresholds = sorted(set(grades["flag_threshold"].dropna().astype(int)))
    report = agreement(labels, grades, taxonomy.ids, reps=reps, seed=seed)
    report["candidate"] = candidate
    report["flag_threshold"] = thresholds[0] if len(thresholds) == 1 else thresholds
    report["taxonomy_version"] = str(versions.iloc[0, 0])
    report["bootstrap_reps"] = reps
    frame = agreement_frame(
        report,
        candidate=candidate,
        threshold=thresholds[0] if len(thresholds) == 1 else None,
        version=report["taxonomy_version"],
        labels_file=str(labels_path),
    )
    frame["bootstrap_reps"] = reps
    return report, frame


@dg.asset(
    group_name=GROUP,
    deps=[judge_grades],
    metadata={"dagster/column_schema": JUDGE_AGREEMENT.column_schema()},
)
def judge_agreement(
    context: dg.AssetExecutionContext, config: AgreementConfig, warehouse: DuckDBResource
) -> dg.MaterializeResult:
    """One row per category (plus ``overall``): the judge against human labels.

    Needs a labels file (``labels_file`` config or ``$DEPSIM_JUDGE_LABELS``); see
    ``depsim_assets.judging.agreement`` for its format.
    """
    path = config.labels_file or os.environ.get("DEPSIM_JUDGE_LABELS")
    if not path:
        raise dg.Failure(
            "judge_agreement needs a labels file: set DEPSIM_JUDGE_LABELS or config labels_file"
        )
    with warehouse.get_connection() as conn:
        report, frame = run_agreement(
            conn,
            path,
            candidate=config.candidate,
            reps=config.bootstrap_reps,
            seed=config.seed,
        )
        replace_partitions(conn, [(JUDGE_AGREEMENT, frame, {})])
    overall = report["overall"]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(frame),
            "dagster/column_schema": JUDGE_AGREEMENT.column_schema(),
            "labels_matched": overall["n"],
            "labels_unmatched": overall["n_unmatched"],
            "kappa": rounded(overall["kappa"]),
            "precision": rounded(overall["precision"]),
            "recall": rounded(overall["recall"]),
            "preview": table_metadata(
                frame,
                columns=["category", "n", "prevalence", "precision", "recall", "kappa"],
                max_rows=25,
            ),
        }
    )
