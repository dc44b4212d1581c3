"""Partitions a comparison must not silently use: failed blocking checks, nothing graded, or
too many unscored replies.

A blocking check stops what is downstream of it in the run where it fails, but the grade rows
it judged are already in the warehouse, and ``depsim compare`` reads grade rows. So the
comparison looks again, for every candidate x day partition it pools (and the baseline's):

- the latest evaluation of every partitioned blocking check of that partition, and of its
  day's traffic, as recorded on the Dagster instance (the same evaluations the UI shows).
  Which checks those are is read from the definitions (:func:`blocking_checks`; assets get
  them as the ``blocking_checks`` resource), never imported from the stages that declare
  them;
- the grade rows themselves: no graded reply at all, or a share of unscored replies above
  ``$DEPSIM_MAX_UNSCORED_SHARE`` (default 0.05, the unscored-share check's own threshold),
  which holds even when the instance that ran the checks is not at hand.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

import dagster as dg
import pandas as pd

from depsim_assets.config import env_threshold
from depsim_assets.measurement import Provenance, assess
from depsim_assets.partitions import multi_key

UNSCORED_ENV = "DEPSIM_MAX_UNSCORED_SHARE"
DEFAULT_MAX_UNSCORED_SHARE = 0.05
# Check history is read newest first, in pages, until every wanted partition has its latest
# evaluation; the bound keeps a huge instance from being read end to end.
_PAGE, _MAX_PAGES = 500, 200
# Partitions named in a one-line refusal; the rest are counted.
SHOWN = 3

Pair = tuple[str, str]


@dataclass(frozen=True)
class PartitionIssue:
    """One compared candidate x day that failed a blocking check or is mostly unscored."""

    candidate: str
    traffic_date: str
    reasons: tuple[str, ...]

    @property
    def key(self) -> str:
        """The partition as the CLI and the UI spell it: ``candidate|YYYY-MM-DD``."""
        return f"{self.candidate}|{self.traffic_date}"

    def text(self) -> str:
        """``key: reason; reason``."""
        return f"{self.key}: {'; '.join(self.reasons)}"

    def as_dict(self) -> dict[str, object]:
        """JSON-ready."""
        return {
            "candidate": self.candidate,
            "traffic_date": self.traffic_date,
            "partition": self.key,
            "reasons": list(self.reasons),
        }


def compared_partitions(comparison: pd.DataFrame) -> list[Pair]:
    """Every (candidate, day) the comparison pooled, the baseline's days included."""
    pairs: set[Pair] = set()
    if comparison.empty:
        return []
    pooled = comparison.drop_duplicates(subset=("candidate", "dates"))
    for name, base, dates in zip(
        pooled["candidate"], pooled["baseline"], pooled["dates"], strict=True
    ):
        for day in str(dates).split(","):
            if day:
                pairs.update({(str(name), day), (str(base), day)})
    return sorted(pairs)


def partition_summary(conn, pairs: Collection[Pair]) -> pd.DataFrame:
    """Per (candidate, traffic_date) of ``pairs``: replies, unscored replies (any category
    unscored, as the unscored-share check counts them), scored rows, the commonest unscored
    reason and the judge models named on the rows. Computed by the warehouse (SQL)."""
    columns = [
        "candidate",
        "traffic_date",
        "replies",
        "unscored",
        "scored_rows",
        "reason",
        "judge_models",
    ]
    if not pairs:
        return pd.DataFrame(columns=pd.Index(columns))
    names = sorted({c for c, _ in pairs})
    days = sorted({d for _, d in pairs})
    # One SQL for DuckDB and Postgres: ordered-set mode() and array_agg with FILTER read the
    # same in both (DuckDB's list()/flatten()/GROUP BY ALL have no Postgres spelling).
    frame = conn.execute(
        """
        WITH grade_rows AS (
            SELECT candidate, traffic_date, completion_id, status, unscored_reason, judge_model
            FROM judge_grades
            WHERE candidate IN (SELECT unnest(?::VARCHAR[]))
              AND traffic_date IN (SELECT unnest(?::VARCHAR[]))
        ), per_reply AS (
            SELECT candidate, traffic_date, completion_id,
                   bool_or(status <> 'scored') AS unscored,
                   count(*) FILTER (WHERE status = 'scored') AS scored_rows,
                   min(split_part(unscored_reason, ':', 1)) AS reason
            FROM grade_rows GROUP BY candidate, traffic_date, completion_id
        ), counts AS (
            SELECT candidate, traffic_date, count(*) AS replies,
                   count(*) FILTER (WHERE unscored) AS unscored,
                   sum(scored_rows)::BIGINT AS scored_rows,
                   mode() WITHIN GROUP (ORDER BY reason) FILTER (WHERE unscored) AS reason
            FROM per_reply GROUP BY candidate, traffic_date
        ), models AS (
            SELECT candidate, traffic_date,
                   array_agg(DISTINCT judge_model ORDER BY judge_model)
                       FILTER (WHERE judge_model IS NOT NULL) AS judge_models
            FROM grade_rows GROUP BY candidate, traffic_date
        )
        SELECT candidate, traffic_date, replies, unscored, scored_rows, reason,
               coalesce(judge_models, ARRAY[]::VARCHAR[]) AS judge_models
        FROM counts JOIN models USING (candidate, traffic_date)
        ORDER BY candidate, traffic_date
        """,
        [names, days],
    ).df()
    wanted = set(pairs)
    keep = [
        (c, d) in wanted for c, d in zip(frame["candidate"], frame["traffic_date"], strict=True)
    ]
    return frame[keep].reset_index(drop=True)[columns]


def grade_issues(summary: pd.DataFrame, max_unscored_share: float) -> dict[Pair, list[str]]:
    """Reasons from the grade rows: nothing graded, or too large a share unscored."""
    out: dict[Pair, list[str]] = {}
    for rec in summary.to_dict("records"):
        replies, unscored = int(rec["replies"]), int(rec["unscored"])
        share = unscored / replies if replies else 1.0
        why = f" (mostly {rec['reason']})" if isinstance(rec["reason"], str) else ""
        if not int(rec["scored_rows"] or 0):
            text = f"no reply graded: all {replies} unscored{why}"
        elif share > max_unscored_share:
            text = (
                f"{unscored} of {replies} replies unscored ({share:.1%}; {UNSCORED_ENV} "
                f"{max_unscored_share:.1%}){why}"
            )
        else:
            continue
        out.setdefault((rec["candidate"], rec["traffic_date"]), []).append(text)
    return out


@dataclass(frozen=True)
class BlockingCheck:
    """A partitioned blocking check, by key: by candidate x day, or by day (the traffic
    checks, whose evaluation speaks for every candidate of that day)."""

    key: dg.AssetCheckKey
    by_candidate: bool


def blocking_checks(
    definitions: dg.Definitions | dg.RepositoryDefinition | Iterable[dg.AssetsDefinition],
) -> list[BlockingCheck]:
    """Every partitioned blocking check of ``definitions`` (the code location, a repository,
    or a list of assets and checks such as ``definitions.ASSETS``), in the order the stages
    declare them (the flow's: traffic first), which is the order of a refusal's reasons.

    Read from the definitions rather than imported, so this stage knows no other stage's
    checks by name, and a check added to any stage is guarded without a line here.
    """
    if isinstance(definitions, dg.Definitions):
        definitions = definitions.get_repository_def()
    if isinstance(definitions, dg.RepositoryDefinition):
        items = list(definitions.asset_checks_defs_by_key.values())
    else:
        items = [d for d in definitions if isinstance(d, dg.AssetChecksDefinition)]
    found: dict[dg.AssetCheckKey, BlockingCheck] = {}
    for checks_def in items:
        partitions = checks_def.partitions_def
        if partitions is None:
            continue
        by_candidate = isinstance(partitions, dg.MultiPartitionsDefinition)
        for spec in checks_def.check_specs:
            if spec.blocking:
                found.setdefault(spec.key, BlockingCheck(spec.key, by_candidate))
    return list(found.values())


def latest_evaluations(
    instance: dg.DagsterInstance, key: dg.AssetCheckKey, partitions: Collection[str]
) -> dict[str, dg.AssetCheckEvaluation]:
    """The newest evaluation of check ``key`` on each of ``partitions`` (those it has one for).

    Read from the instance's event log (newest first), the record the UI shows; a planned or
    skipped execution has no evaluation and is passed over.
    """
    wanted, found = set(partitions), {}
    cursor = None
    for _ in range(_MAX_PAGES):
        records = instance.event_log_storage.get_asset_check_execution_history(
            key, limit=_PAGE, cursor=cursor
        )
        for record in records:
            if record.partition in wanted and record.partition not in found and record.event:
                evaluation = record.event.asset_check_evaluation
                if evaluation is not None:
                    found[record.partition] = evaluation
        if len(records) < _PAGE or len(found) == len(wanted):
            break
        cursor = records[-1].id
    return found


def check_issues(
    instance: dg.DagsterInstance, checks: Iterable[BlockingCheck], pairs: Iterable[Pair]
) -> dict[Pair, list[str]]:
    """Reasons from the instance: each of ``checks`` whose latest evaluation on the pair's
    partition (or its day, for the traffic checks) failed at ERROR severity."""
    pairs = sorted(set(pairs))
    out: dict[Pair, list[str]] = {}
    for check in checks:
        key, by_candidate = check.key, check.by_candidate
        if by_candidate:
            wanted: dict[str, list[Pair]] = {str(multi_key(c, d)): [(c, d)] for c, d in pairs}
        else:
            wanted = {}
            for c, d in pairs:
                wanted.setdefault(d, []).append((c, d))
        for partition, evaluation in latest_evaluations(instance, key, list(wanted)).items():
            if evaluation.passed or evaluation.severity != dg.AssetCheckSeverity.ERROR:
                continue
            scope = "" if by_candidate else f" (traffic of {partition})"
            text = f"check {key.name} failed{scope}: {evaluation.description or 'no description'}"
            for pair in wanted[partition]:
                out.setdefault(pair, []).append(text)
    return out


@dataclass(frozen=True)
class Guard:
    """What a comparison pools and whether it may be trusted: partition issues and provenance."""

    issues: list[PartitionIssue]
    provenance: Provenance
    partitions: list[Pair]

    @property
    def warnings(self) -> list[str]:
        """One line per problem partition."""
        return [issue.text() for issue in self.issues]

    def refusal(self, override: str = "--allow-failed") -> str:
        """The one-line error when the comparison is refused."""
        shown = "; ".join(f"[{issue.text()}]" for issue in self.issues[:SHOWN])
        more = len(self.issues) - SHOWN
        return (
            f"{len(self.issues)} compared partition(s) failed a blocking check or are mostly "
            f"unscored: {shown}" + (f" and {more} more" if more > 0 else "") + "; fix and "
            f"re-materialize them (their checks run with them), or pass {override} to "
            "compare them anyway, marked"
        )

    def metadata(self) -> dict[str, object]:
        """Dagster metadata: ``measurement``, ``warning`` (when not a measurement) and the
        partitions that failed (``failed_partitions``, ``warnings``)."""
        out = self.provenance.metadata()
        out["failed_partitions"] = len(self.issues)
        if self.issues:
            out["warnings"] = dg.MetadataValue.json(self.warnings)
        return out


def guard_comparison(
    comparison: pd.DataFrame,
    conn,
    *,
    instance: dg.DagsterInstance | None = None,
    checks: Sequence[BlockingCheck] | None = None,
    max_unscored_share: float | None = None,
) -> Guard:
    """Look at every partition ``comparison`` pooled: the latest evaluations on ``instance``
    (when given) of ``checks`` (then required: :func:`blocking_checks` of the definitions, or
    the code location's ``blocking_checks`` resource), and the grade rows in ``conn``."""
    if instance is not None and checks is None:
        # A guard that silently looked at no check would pass what the checks failed.
        raise ValueError("guard_comparison: instance= needs checks= (blocking_checks(defs))")
    pairs = compared_partitions(comparison)
    limit = max_unscored_share
    if limit is None:
        limit = env_threshold(UNSCORED_ENV, DEFAULT_MAX_UNSCORED_SHARE)
    summary = partition_summary(conn, pairs)
    reasons: dict[Pair, list[str]] = {}
    sources: list[Mapping[Pair, list[str]]] = [grade_issues(summary, limit)]
    if instance is not None and checks is not None:
        sources.insert(0, check_issues(instance, checks, pairs))
    for found in sources:
        for pair, texts in found.items():
            reasons.setdefault(pair, []).extend(texts)
    issues = [PartitionIssue(c, d, tuple(reasons[(c, d)])) for c, d in sorted(reasons)]
    models = [m for ms in summary["judge_models"] for m in (ms if ms is not None else [])]
    provenance = assess(models, sorted({d for _, d in pairs}))
    return Guard(issues, provenance, pairs)
