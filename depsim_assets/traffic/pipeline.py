"""One day of traffic to warehouse rows: read, quarantine, filter, sample, de-identify, strip.

The day is streamed once. Every line ends in exactly one bucket (quarantined for a reason,
ineligible for a reason, or eligible), so the funnel reconciles exactly. Only the sample is
held in memory (a heap of ``n`` records) plus one 8-byte digest per id for duplicate
detection, and only sampled records are de-identified: raw text never leaves
:func:`run_sampling`.

Every de-identified conversation is then scanned for residual PII (:mod:`.residue`, a layer
independent of the de-identifier) before anything is returned for writing. A conversation with
a hit is quarantined (reason ``residual_pii``, types and field paths, never text) and the day
goes on: kept + residual_quarantined = sampled. The day fails only when the quarantined share
of the sample exceeds ``max_residual_share``; then no sampled or prefix row is returned, and
the status row says why.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from depsim_assets.traffic import residue
from depsim_assets.traffic.deid import DEID_VERSION, Deidentifier, hash_user
from depsim_assets.traffic.eligibility import EligibilityConfig, ineligible_reason
from depsim_assets.traffic.logs import (
    DEFAULT_MAX_LINE_BYTES,
    LogRecord,
    Rejected,
    Unreadable,
    iter_log,
)
from depsim_assets.traffic.sample import Sampler
from depsim_assets.traffic.selection import (
    DUPLICATE_ID,
    Selection,
    quarantine_row,
    stratum_of,
)
from depsim_assets.traffic.strip import canonical_json, prefix_hash, split_final_turn
from depsim_assets.traffic.surrogates import surrogate_digests
from depsim_assets.warehouse import (
    CONVERSATION_PREFIXES,
    SAMPLED_CONVERSATIONS,
    SAMPLING_FUNNEL,
    SAMPLING_QUARANTINE,
    SAMPLING_STATUS,
)

RESIDUAL_PII = "residual_pii"
DEFAULT_MAX_RESIDUAL_SHARE = 0.01


@dataclass
class SamplingResult:
    """Rows for the sampling tables of one day, the day's counts and its verdict.

    ``counts`` = ``{"date", "records_in", "quarantined", "quarantine_reasons",
    "ineligible", "eligible", "sampled", "pii_replaced", "unreadable_files",
    "residual_quarantined", "residual_pii", "kept"}``; records_in = quarantined +
    sum(ineligible) + eligible, and sampled = kept + residual_quarantined. ``unreadable_files``
    counts files (by kind), not records: they are outside records_in. ``quarantine_rows``
    holds both the records rejected while reading and the sampled conversations quarantined
    for residual PII (reason ``residual_pii``). When ``status_row["passed"]`` is false,
    ``sampled_rows`` and ``prefix_rows`` are empty.
    """

    sampled_rows: list[dict[str, Any]] = field(default_factory=list)
    prefix_rows: list[dict[str, Any]] = field(default_factory=list)
    quarantine_rows: list[dict[str, Any]] = field(default_factory=list)
    funnel_rows: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    status_row: dict[str, Any] = field(default_factory=dict)
    residue_seconds: float = 0.0
    engine: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Whether the day's sample may be used downstream."""
        return bool(self.status_row.get("passed"))


def check_stratify_field(field_name: str | None) -> None:
    """Reject a stratification field that is not source, model or metadata.<key>."""
    if field_name is None or field_name in ("source", "model"):
        return
    if not field_name.startswith("metadata.") or not field_name.removeprefix("metadata."):
        raise ValueError(
            f"stratify_by must be 'source', 'model' or 'metadata.<key>', got {field_name!r}"
        )


def allocate(sizes: dict[str, int], n: int) -> dict[str, int]:
    """Proportional allocation of ``n`` draws over strata of ``sizes`` (largest remainder).

    Each stratum gets ``floor(n * N_h / N)`` and the leftover draws go to the largest
    remainders (ties by stratum name), capped at the stratum's size.
    """
    total = sum(sizes.values())
    if total == 0 or n <= 0:
        return {h: 0 for h in sizes}
    if n >= total:
        return dict(sizes)
    quotas = {h: n * size / total for h, size in sizes.items()}
    alloc = {h: int(q) for h, q in quotas.items()}
    left = n - sum(alloc.values())
    for h in sorted(quotas, key=lambda h: (-(quotas[h] - alloc[h]), h)):
        if left == 0:
            break
        if alloc[h] < sizes[h]:
            alloc[h] += 1
            left -= 1
    return alloc


ENGINES = ("duckdb", "python")
ENGINE_ENV = "DEPSIM_SAMPLING_ENGINE"


def sampling_engine(engine: str | None = None) -> str:
    """The reader that decides the day's lines: ``engine``, else ``$DEPSIM_SAMPLING_ENGINE``,
    else ``duckdb``. Both give the same rows; ``python`` is the reference the DuckDB path is
    tested against."""
    chosen = engine or os.environ.get(ENGINE_ENV) or "duckdb"
    if chosen not in ENGINES:
        raise ValueError(f"sampling engine must be one of {', '.join(ENGINES)}, got {chosen!r}")
    return chosen


def run_sampling(
    log_root: Path | str | None,
    date: str,
    *,
    n: int | None = None,
    fraction: float | None = None,
    seed: int,
    salt: str,
    eligibility: EligibilityConfig | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    stratify_by: str | None = None,
    max_residual_share: float = DEFAULT_MAX_RESIDUAL_SHARE,
    engine: str | None = None,
    workers: int | None = None,
) -> SamplingResult:
    """Sample ``n`` eligible conversations (or a ``fraction``) of one day, de-identified.

    ``log_root`` None means the configured log. ``seed`` fixes the sample; ``salt`` keys
    surrogates and user hashes. With ``stratify_by`` the day is split into strata by that
    field and ``n`` is allocated proportionally to the strata's eligible sizes (a fraction
    applies within each stratum); each row's weight is its stratum's eligible count over its
    stratum's sample size. Each de-identified conversation is scanned for residual PII and
    quarantined on a hit; the day fails when more than ``max_residual_share`` of the sample is
    quarantined so. ``engine`` picks the reader (:func:`sampling_engine`: DuckDB unless told
    otherwise; both give identical results), ``workers`` the de-identification processes
    (:func:`deid_workers`). Raises FileNotFoundError when the day has no log folder.
    """
    check_stratify_field(stratify_by)
    if (n is None) == (fraction is None):
        raise ValueError("give exactly one of n and fraction")
    if n is not None and n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if fraction is not None and not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    eligibility = eligibility or EligibilityConfig()
    started = time.perf_counter()
    if sampling_engine(engine) == "duckdb":
        from depsim_assets.traffic.fast_sample import select_duckdb

        selection = select_duckdb(
            log_root,
            date,
            n=n,
            fraction=fraction,
            seed=seed,
            eligibility=eligibility,
            max_line_bytes=max_line_bytes,
            stratify_by=stratify_by,
        )
    else:
        selection = select_python(
            log_root,
            date,
            n=n,
            fraction=fraction,
            seed=seed,
            eligibility=eligibility,
            max_line_bytes=max_line_bytes,
            stratify_by=stratify_by,
        )
    selection.engine["select_s"] = round(time.perf_counter() - started, 3)
    return finish_sampling(
        selection,
        date,
        n=n,
        seed=seed,
        salt=salt,
        stratify_by=stratify_by,
        max_residual_share=max_residual_share,
        workers=workers,
    )


def select_python(
    log_root: Path | str | None,
    date: str,
    *,
    n: int | None,
    fraction: float | None,
    seed: int,
    eligibility: EligibilityConfig,
    max_line_bytes: int,
    stratify_by: str | None,
) -> Selection:
    """The read phase in Python: every line decoded and validated here (the reference)."""
    # One bottom-k sampler per stratum: the first k of a stratum's bottom-n are its bottom-k,
    # so proportional allocation after the single pass takes a prefix of each.
    samplers: dict[str | None, Sampler[LogRecord]] = {}
    seen_ids: set[bytes] = set()
    sel = Selection(engine={"engine": "python"})

    for item in iter_log(log_root, date, max_line_bytes=max_line_bytes):
        if isinstance(item, Unreadable):
            # A file, not a record: named in the quarantine table, counted outside records_in.
            sel.quarantine_rows.append(_quarantine_row(date, item))
            sel.unreadable[item.kind] += 1
            continue
        sel.records_in += 1
        if isinstance(item, Rejected):
            sel.quarantine_rows.append(_quarantine_row(date, item))
            sel.quarantined[item.reason] += 1
            continue
        # A digest rather than the id keeps memory per record small on million-line days.
        digest = hashlib.blake2b(item.conversation_id.encode(), digest_size=8).digest()
        if digest in seen_ids:
            dup = Rejected(
                item.source_file, item.line_number, DUPLICATE_ID, "conversation id seen earlier"
            )
            sel.quarantine_rows.append(_quarantine_row(date, dup))
            sel.quarantined[DUPLICATE_ID] += 1
            continue
        seen_ids.add(digest)
        reason = ineligible_reason(item, eligibility)
        if reason is not None:
            sel.ineligible[reason] += 1
            continue
        stratum = stratum_of(item, stratify_by)
        sampler = samplers.get(stratum)
        if sampler is None:
            sampler = samplers[stratum] = Sampler(seed=seed, n=n, fraction=fraction)
        sampler.offer(item.conversation_id, item)

    sel.sizes = {h: s.offered for h, s in samplers.items()}
    sel.samples = {h: s.result() for h, s in samplers.items()}
    return sel


def finish_sampling(
    selection: Selection,
    date: str,
    *,
    n: int | None,
    seed: int,
    salt: str,
    stratify_by: str | None,
    max_residual_share: float,
    workers: int | None = None,
) -> SamplingResult:
    """Allocation, de-identification, the residue check, weights and counts of a selection."""
    sizes = selection.sizes
    results = selection.samples
    if n is not None and stratify_by is not None:
        alloc = allocate({str(h): size for h, size in sizes.items()}, n)
        results = {h: items[: alloc[str(h)]] for h, items in results.items()}
    eligible = sum(sizes.values())
    quarantine_rows = list(selection.quarantine_rows)
    pii_total: Counter[str] = Counter()
    residual_kinds: Counter[str] = Counter()
    residual_quarantined = 0
    residue_seconds = 0.0
    sampled_rows = []
    order = sorted(results, key=lambda h: "" if h is None else h)
    jobs = [(record, stratum) for stratum in order for record in results[stratum]]
    done = iter(deidentify_all(jobs, date, salt, seed, workers=workers))
    for stratum in order:
        kept = []
        for record in results[stratum]:
            row, counts, hit_kinds, hit_detail, seconds = next(done)
            residue_seconds += seconds
            if hit_kinds:
                # The row is dropped here, before anything is written; only where and what.
                residual_quarantined += 1
                residual_kinds.update(set(hit_kinds))
                quarantine_rows.append(
                    quarantine_row(
                        date, record.source_file, record.line_number, RESIDUAL_PII, hit_detail
                    )
                )
                continue
            kept.append(row)
            pii_total.update(counts)
        # Weights over what is kept, so they still sum to the stratum's eligible count.
        for row in kept:
            row["sampling_weight"] = sizes[stratum] / len(kept)
        sampled_rows.extend(kept)

    drawn = len(sampled_rows) + residual_quarantined
    counts = {
        "date": date,
        "records_in": selection.records_in,
        "quarantined": sum(selection.quarantined.values()),
        "quarantine_reasons": dict(sorted(selection.quarantined.items())),
        "ineligible": dict(sorted(selection.ineligible.items())),
        "eligible": eligible,
        "sampled": drawn,
        "pii_replaced": dict(sorted(pii_total.items())),
        "unreadable_files": dict(sorted(selection.unreadable.items())),
        "residual_quarantined": residual_quarantined,
        "residual_pii": dict(sorted(residual_kinds.items())),
        "kept": len(sampled_rows),
    }
    if stratify_by is not None:
        counts["strata"] = {
            str(h): {"eligible": sizes[h], "sampled": len(results[h])}
            for h in sorted(sizes, key=str)  # stratified: every stratum is a str
        }
    status = status_row(date, drawn, residual_quarantined, max_residual_share)
    if not status["passed"]:
        sampled_rows = []
    _check_columns(quarantine_rows, SAMPLING_QUARANTINE.column_names)
    return SamplingResult(
        sampled_rows=sampled_rows,
        prefix_rows=prefix_rows_from_sampled(sampled_rows),
        quarantine_rows=quarantine_rows,
        funnel_rows=funnel_rows(counts),
        counts=counts,
        status_row=status,
        residue_seconds=residue_seconds,
        engine=selection.engine,
    )


DEID_WORKERS_ENV = "DEPSIM_DEID_WORKERS"
# Below this many sampled conversations one process is faster: each worker process pays the
# de-identifier's start-up (imports, recognizers, name lists: seconds) before its first row.
PARALLEL_MIN = 4000
# On two CPUs the second worker competes with everything else on the machine: measured, it paid
# at 100,000 (44 s against 55 s for the whole 1M-day sample, load ~2; benchmarks/
# sampling_scale.py --deid-workers 2) and lost at 20,000 on a busier machine (72-79 s against
# 46-56 s).
PARALLEL_MIN_TWO_CPUS = 50_000
_CHUNK_JOBS = 500

Done = tuple[dict[str, Any], dict[str, int], list[str], str, float]


def deid_workers(workers: int | None, jobs: int) -> int:
    """How many processes de-identify ``jobs`` conversations: ``workers``, else
    ``$DEPSIM_DEID_WORKERS``, else one per CPU (at most 4) on a machine with more than two
    CPUs once there are at least :data:`PARALLEL_MIN` of them, two on a two-CPU machine from
    :data:`PARALLEL_MIN_TWO_CPUS`, and one otherwise.

    Measured on the shared 2-core machine (docs/sampling.md): at 20,000 conversations two
    processes took 72-79 s against 46-56 s for one, each worker paying the de-identifier's
    start-up while the other core was busy anyway; at 100,000 the whole sample took 44 s
    with two against 55 s with one.
    """
    if workers is None and os.environ.get(DEID_WORKERS_ENV):
        try:
            workers = int(os.environ[DEID_WORKERS_ENV])
        except ValueError:
            raise ValueError(
                f"{DEID_WORKERS_ENV} must be a whole number, got {os.environ[DEID_WORKERS_ENV]!r}"
            ) from None
    if workers is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        if cpus > 2 and jobs >= PARALLEL_MIN:
            workers = min(cpus, 4)
        elif cpus == 2 and jobs >= PARALLEL_MIN_TWO_CPUS:
            workers = 2
        else:
            workers = 1
    if workers < 1:
        raise ValueError(f"de-identification workers must be >= 1, got {workers}")
    return min(workers, max(1, -(-jobs // _CHUNK_JOBS)))


def deidentify_all(
    jobs: list[tuple[LogRecord, str | None]],
    date: str,
    salt: str,
    seed: int,
    *,
    workers: int | None = None,
) -> list[Done]:
    """``(row, pii counts, residual hit kinds, hit description, residue seconds)`` per
    ``(record, stratum)``, in order, de-identified in ``deid_workers`` processes.

    Rows do not depend on which process made them: surrogates are keyed by the salt and the
    conversation alone, so the parallel result equals the serial one.
    """
    count = deid_workers(workers, len(jobs))
    if count == 1:
        return _deid_chunk((jobs, date, salt, seed))
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    chunks = [jobs[i : i + _CHUNK_JOBS] for i in range(0, len(jobs), _CHUNK_JOBS)]
    # spawn, not fork: the parent holds DuckDB and Dagster threads, which fork does not copy.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=count, mp_context=context) as pool:
        parts = pool.map(_deid_chunk, [(chunk, date, salt, seed) for chunk in chunks])
        return [done for part in parts for done in part]


_DEIDENTIFIERS: dict[str, Deidentifier] = {}


def _deid_chunk(args: tuple[list[tuple[LogRecord, str | None]], str, str, int]) -> list[Done]:
    jobs, date, salt, seed = args
    deidentifier = _DEIDENTIFIERS.get(salt)
    if deidentifier is None:
        _DEIDENTIFIERS.clear()
        deidentifier = _DEIDENTIFIERS[salt] = Deidentifier(salt)
    out: list[Done] = []
    for record, stratum in jobs:
        row, counts = _sampled_row(record, date, deidentifier, salt, seed, stratum)
        started = time.perf_counter()
        hits = residual_hits(row)
        seconds = time.perf_counter() - started
        kinds = sorted({h.kind for h in hits})
        out.append((row, counts, kinds, residue.describe(hits) if hits else "", seconds))
    return out


def residual_hits(row: dict[str, Any]) -> list[residue.Hit]:
    """Residual-PII hits of one ``sampled_conversations`` row about to be written: its
    messages (surrogates exempt by their digests) and its short id/source/model fields.
    """
    cid = row["conversation_id"]
    messages = json.loads(row["messages_json"])
    digests = json.loads(row["surrogate_digests"])
    fields = {
        "conversation_id": cid,
        "source": row["source"],
        "production_model": row["production_model"],
    }
    hits = residue.scan_messages(cid, messages, digests) + residue.scan_row_fields(cid, fields)
    if row.get("tools_json"):
        hits.extend(tool_schema_hits(cid, json.loads(row["tools_json"]), digests))
    return hits


def tool_schema_hits(
    conversation_id: str, tools: list[dict[str, Any]], digests: list[str]
) -> list[residue.Hit]:
    """Residual-PII hits in the free text of declared tool schemas (descriptions, enums...),
    located by path; keys and tool names are structure and are not scanned."""
    known = frozenset(digests)
    hits = []
    for path, text in _schema_strings(tools, "tools"):
        hits.extend(
            residue.Hit(conversation_id, -1, kind, path=path, rule=rule)
            for kind, rule in residue.scan_text(text, known)
        )
    return hits


_PATH_KEY = re.compile(r"[A-Za-z_$][A-Za-z0-9_]{0,23}")


def _schema_strings(value: Any, path: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    stack = [(value, path)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, dict):
            for key, item in node.items():
                if key == "name" and isinstance(item, str):
                    continue
                # A path names only short identifier-like keys: it goes to the quarantine row.
                safe = isinstance(key, str) and _PATH_KEY.fullmatch(key)
                stack.append((item, f"{where}.{key if safe else '{key}'}"))
        elif isinstance(node, list):
            stack.extend((item, f"{where}[{i}]") for i, item in enumerate(node))
        elif isinstance(node, str) and node:
            out.append((where, node))
    return out


def status_row(
    date: str, sampled: int, residual_quarantined: int, max_residual_share: float
) -> dict[str, Any]:
    """The day's ``sampling_status`` row: passed unless the residual share is over the limit."""
    share = residual_quarantined / sampled if sampled else 0.0
    passed = share <= max_residual_share
    if passed:
        reason = (
            f"passed: {residual_quarantined} of {sampled} sampled conversations quarantined "
            f"for residual PII ({share:.2%}, limit {max_residual_share:.2%})"
        )
    else:
        reason = (
            f"failed: {residual_quarantined} of {sampled} sampled conversations still hold "
            f"residual PII after de-identification ({share:.2%} > limit "
            f"{max_residual_share:.2%}, DEPSIM_MAX_RESIDUAL_SHARE); nothing was written to "
            "sampled_conversations; see sampling_quarantine (reason residual_pii)"
        )
    row = {
        "traffic_date": date,
        "passed": passed,
        "sampled": sampled,
        "kept": sampled - residual_quarantined,
        "residual_quarantined": residual_quarantined,
        "residual_share": share,
        "max_residual_share": max_residual_share,
        "reason": reason,
        "deid_version": DEID_VERSION,
        "residue_version": residue.RESIDUE_VERSION,
    }
    _check_columns([row], SAMPLING_STATUS.column_names)
    return row


def prefix_rows_from_sampled(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``conversation_prefixes`` rows derived from ``sampled_conversations`` rows alone."""
    out = []
    for row in rows:
        prefix, reply = split_final_turn(json.loads(row["messages_json"]))
        prefix_json = canonical_json(prefix)
        out.append(
            {
                "conversation_id": row["conversation_id"],
                "traffic_date": row["traffic_date"],
                "prefix_json": prefix_json,
                "n_prefix_messages": len(prefix),
                "prefix_hash": prefix_hash(prefix),
                "original_reply": reply,
                "production_model": row["production_model"],
                "tools_json": row.get("tools_json"),
            }
        )
    _check_columns(out, CONVERSATION_PREFIXES.column_names)
    return out


def funnel_rows(counts: dict[str, Any]) -> list[dict[str, Any]]:
    """``sampling_funnel`` rows from a counts dict: one row per stage and reason."""
    date = counts["date"]
    rows = [{"traffic_date": date, "stage": "records_in", "reason": "", "n": counts["records_in"]}]
    for stage, key in (
        ("quarantined", "quarantine_reasons"),
        ("ineligible", "ineligible"),
        ("unreadable_file", "unreadable_files"),
    ):
        for reason, n in counts.get(key, {}).items():
            rows.append({"traffic_date": date, "stage": stage, "reason": reason, "n": n})
    for stage in ("eligible", "sampled"):
        rows.append({"traffic_date": date, "stage": stage, "reason": "", "n": counts[stage]})
    if "residual_quarantined" in counts:
        rows.append(
            {
                "traffic_date": date,
                "stage": "residual_quarantined",
                "reason": RESIDUAL_PII,
                "n": counts["residual_quarantined"],
            }
        )
        rows.append({"traffic_date": date, "stage": "kept", "reason": "", "n": counts["kept"]})
    _check_columns(rows, SAMPLING_FUNNEL.column_names)
    return rows


def _sampled_row(
    record: LogRecord,
    date: str,
    deidentifier: Deidentifier,
    salt: str,
    seed: int,
    stratum: str | None = None,
) -> tuple[dict[str, Any], dict[str, int]]:
    surrogates: set[str] = set()
    tools = None
    if record.tools:
        # Schemas and messages in one pass: one original, one surrogate, wherever it appears.
        messages, tools, counts = deidentifier.deidentify_with_tools(
            record.messages, record.conversation_id, tools=record.tools, surrogates=surrogates
        )
    else:
        messages, counts = deidentifier.deidentify_messages(
            record.messages, record.conversation_id, surrogates=surrogates
        )
    row = {
        "conversation_id": record.conversation_id,
        "traffic_date": date,
        "user_hash": hash_user(record.user_id, salt) if record.user_id is not None else None,
        "source": record.source,
        "production_model": record.model,
        "n_messages": len(messages),
        "has_tool_calls": any(
            m.get("role") == "assistant" and bool(m.get("tool_calls")) for m in messages
        ),
        "messages_json": json.dumps(messages, ensure_ascii=False),
        "tools_json": json.dumps(tools, ensure_ascii=False) if tools else None,
        "pii_counts_json": json.dumps(counts, sort_keys=True),
        "sampling_weight": 0.0,  # set once the stratum's kept rows are known
        "sample_seed": seed,
        "deid_version": DEID_VERSION,
        "stratum": stratum,
        "surrogate_digests": json.dumps(surrogate_digests(surrogates)),
    }
    _check_columns([row], SAMPLED_CONVERSATIONS.column_names)
    return row, counts


def _quarantine_row(date: str, rej: Rejected) -> dict[str, Any]:
    return quarantine_row(date, rej.source_file, rej.line_number, rej.reason, rej.detail)


def _check_columns(rows: list[dict[str, Any]], columns: list[str]) -> None:
    # A drifted key set would only surface at insert time inside the asset; fail here instead.
    if rows and list(rows[0]) != columns:
        raise AssertionError(f"row keys {list(rows[0])} differ from table columns {columns}")
