"""One day of traffic to warehouse rows: read, quarantine, filter, sample, de-identify, strip.

The day is streamed once. Every line ends in exactly one bucket (quarantined for a reason,
ineligible for a reason, or eligible), so the funnel reconciles exactly. Only the sample is
held in memory (a heap of ``n`` records) plus one 8-byte digest per id for duplicate
detection, and only sampled records are de-identified: raw text never leaves
:func:`run_sampling`.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from depsim_assets.traffic.deid import DEID_VERSION, Deidentifier, hash_user, surrogate_digests
from depsim_assets.traffic.eligibility import EligibilityConfig, ineligible_reason, metadata_text
from depsim_assets.traffic.logs import (
    DEFAULT_MAX_LINE_BYTES,
    LogRecord,
    Rejected,
    Unreadable,
    iter_log,
)
from depsim_assets.traffic.sample import Sampler
from depsim_assets.traffic.strip import canonical_json, prefix_hash, split_final_turn
from depsim_assets.warehouse import (
    CONVERSATION_PREFIXES,
    SAMPLED_CONVERSATIONS,
    SAMPLING_FUNNEL,
    SAMPLING_QUARANTINE,
)

DUPLICATE_ID = "duplicate_id"
NO_STRATUM = "(none)"


@dataclass
class SamplingResult:
    """Rows for the four sampling tables of one day, and the day's counts.

    ``counts`` = ``{"date", "records_in", "quarantined", "quarantine_reasons",
    "ineligible", "eligible", "sampled", "pii_replaced", "unreadable_files"}``; records_in =
    quarantined + sum(ineligible) + eligible. ``unreadable_files`` counts files (by kind),
    not records: they are outside records_in.
    """

    sampled_rows: list[dict[str, Any]] = field(default_factory=list)
    prefix_rows: list[dict[str, Any]] = field(default_factory=list)
    quarantine_rows: list[dict[str, Any]] = field(default_factory=list)
    funnel_rows: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)


def stratum_of(record: LogRecord, field_name: str | None) -> str | None:
    """The stratum of a record under ``field_name`` (``source``, ``model`` or
    ``metadata.<key>``); None when sampling is not stratified, ``(none)`` for a missing value.
    """
    if field_name is None:
        return None
    if field_name == "source":
        return record.source
    if field_name == "model":
        return record.model
    key = field_name.removeprefix("metadata.")
    value = metadata_text((record.metadata or {}).get(key))
    return NO_STRATUM if value is None else value


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
) -> SamplingResult:
    """Sample ``n`` eligible conversations (or a ``fraction``) of one day, de-identified.

    ``log_root`` None means the configured log. ``seed`` fixes the sample; ``salt`` keys
    surrogates and user hashes. With ``stratify_by`` the day is split into strata by that
    field and ``n`` is allocated proportionally to the strata's eligible sizes (a fraction
    applies within each stratum); each row's weight is its stratum's eligible count over its
    stratum's sample size. Raises FileNotFoundError when the day has no log folder.
    """
    check_stratify_field(stratify_by)
    eligibility = eligibility or EligibilityConfig()
    # One bottom-k sampler per stratum: the first k of a stratum's bottom-n are its bottom-k,
    # so proportional allocation after the single pass takes a prefix of each.
    samplers: dict[str | None, Sampler[LogRecord]] = {}
    seen_ids: set[bytes] = set()
    quarantine_rows: list[dict[str, Any]] = []
    quarantined: Counter[str] = Counter()
    ineligible: Counter[str] = Counter()
    unreadable: Counter[str] = Counter()
    records_in = 0

    for item in iter_log(log_root, date, max_line_bytes=max_line_bytes):
        if isinstance(item, Unreadable):
            # A file, not a record: named in the quarantine table, counted outside records_in.
            quarantine_rows.append(_quarantine_row(date, item))
            unreadable[item.kind] += 1
            continue
        records_in += 1
        if isinstance(item, Rejected):
            quarantine_rows.append(_quarantine_row(date, item))
            quarantined[item.reason] += 1
            continue
        # A digest rather than the id keeps memory per record small on million-line days.
        digest = hashlib.blake2b(item.conversation_id.encode(), digest_size=8).digest()
        if digest in seen_ids:
            dup = Rejected(
                item.source_file, item.line_number, DUPLICATE_ID, "conversation id seen earlier"
            )
            quarantine_rows.append(_quarantine_row(date, dup))
            quarantined[DUPLICATE_ID] += 1
            continue
        seen_ids.add(digest)
        reason = ineligible_reason(item, eligibility)
        if reason is not None:
            ineligible[reason] += 1
            continue
        stratum = stratum_of(item, stratify_by)
        sampler = samplers.get(stratum)
        if sampler is None:
            sampler = samplers[stratum] = Sampler(seed=seed, n=n, fraction=fraction)
        sampler.offer(item.conversation_id, item)

    sizes = {h: s.offered for h, s in samplers.items()}
    results = {h: s.result() for h, s in samplers.items()}
    if n is not None and stratify_by is not None:
        alloc = allocate({str(h): size for h, size in sizes.items()}, n)
        results = {h: items[: alloc[str(h)]] for h, items in results.items()}
    eligible = sum(sizes.values())
    deidentifier = Deidentifier(salt)
    pii_total: Counter[str] = Counter()
    sampled_rows = []
    for stratum in sorted(results, key=lambda h: "" if h is None else h):
        chosen = results[stratum]
        weight = sizes[stratum] / len(chosen) if chosen else 0.0
        for record in chosen:
            row, counts = _sampled_row(
                record, date, deidentifier, salt, weight, seed, stratum
            )
            sampled_rows.append(row)
            pii_total.update(counts)

    counts = {
        "date": date,
        "records_in": records_in,
        "quarantined": sum(quarantined.values()),
        "quarantine_reasons": dict(sorted(quarantined.items())),
        "ineligible": dict(sorted(ineligible.items())),
        "eligible": eligible,
        "sampled": len(sampled_rows),
        "pii_replaced": dict(sorted(pii_total.items())),
        "unreadable_files": dict(sorted(unreadable.items())),
    }
    if stratify_by is not None:
        counts["strata"] = {
            str(h): {"eligible": sizes[h], "sampled": len(results[h])} for h in sorted(sizes)
        }
    _check_columns(quarantine_rows, SAMPLING_QUARANTINE.column_names)
    return SamplingResult(
        sampled_rows=sampled_rows,
        prefix_rows=prefix_rows_from_sampled(sampled_rows),
        quarantine_rows=quarantine_rows,
        funnel_rows=funnel_rows(counts),
        counts=counts,
    )


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
    _check_columns(rows, SAMPLING_FUNNEL.column_names)
    return rows


def _sampled_row(
    record: LogRecord,
    date: str,
    deidentifier: Deidentifier,
    salt: str,
    weight: float,
    seed: int,
    stratum: str | None = None,
) -> tuple[dict[str, Any], dict[str, int]]:
    surrogates: set[str] = set()
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
        "pii_counts_json": json.dumps(counts, sort_keys=True),
        "sampling_weight": weight,
        "sample_seed": seed,
        "deid_version": DEID_VERSION,
        "stratum": stratum,
        "surrogate_digests": json.dumps(surrogate_digests(surrogates)),
    }
    _check_columns([row], SAMPLED_CONVERSATIONS.column_names)
    return row, counts


def _quarantine_row(date: str, rej: Rejected) -> dict[str, Any]:
    return {
        "traffic_date": date,
        "source_file": rej.source_file,
        "line_number": rej.line_number,
        "reason": rej.reason,
        "detail": rej.detail,
    }


def _check_columns(rows: list[dict[str, Any]], columns: list[str]) -> None:
    # A drifted key set would only surface at insert time inside the asset; fail here instead.
    if rows and list(rows[0]) != columns:
        raise AssertionError(f"row keys {list(rows[0])} differ from table columns {columns}")
