"""What a sampling pass over one day selects, before anything is de-identified.

Both readers of a day, the Python one (:func:`.pipeline.select_python`) and the DuckDB one
(:func:`.fast_sample.select_duckdb`), produce a :class:`Selection`; the rest of sampling
(allocation, de-identification, the residue check, weights, counts) is shared, so the two
differ only in how each line is decided.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from depsim_assets.traffic.eligibility import metadata_text
from depsim_assets.traffic.logs import LogRecord

DUPLICATE_ID = "duplicate_id"
NO_STRATUM = "(none)"


@dataclass
class Selection:
    """The read phase of a day: funnel counters, quarantine rows in log order, and per stratum
    its eligible size and its bottom-k records in key order.

    ``samples`` holds, per stratum, at least the records the allocation will keep (all of
    the stratum's sample for a fraction); ``engine`` facts (how many lines or files were
    decided by Python on the DuckDB path, timings) go to the run's metadata.
    """

    records_in: int = 0
    quarantine_rows: list[dict[str, Any]] = field(default_factory=list)
    quarantined: Counter[str] = field(default_factory=Counter)
    ineligible: Counter[str] = field(default_factory=Counter)
    unreadable: Counter[str] = field(default_factory=Counter)
    sizes: dict[str | None, int] = field(default_factory=dict)
    samples: dict[str | None, list[LogRecord]] = field(default_factory=dict)
    engine: dict[str, Any] = field(default_factory=dict)


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


def quarantine_row(
    date: str, source_file: str, line_number: int, reason: str, detail: str
) -> dict[str, Any]:
    """One ``sampling_quarantine`` row."""
    return {
        "traffic_date": date,
        "source_file": source_file,
        "line_number": line_number,
        "reason": reason,
        "detail": detail,
    }
