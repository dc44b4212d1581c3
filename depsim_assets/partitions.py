"""Partitions, declared once and imported everywhere.

- ``traffic_date``: one partition per day of production traffic.
- ``candidate``: dynamic; one partition per registered candidate plus the reserved
  ``production`` (the original replies, no model call). A sensor keeps it in step with
  ``candidates.yaml``.
- ``candidate_by_date``: both at once. Dagster sorts dimension names, so a key reads
  ``candidate|YYYY-MM-DD``.
"""

from __future__ import annotations

import os

import dagster as dg

from depsim_assets import config

PRODUCTION = config.PRODUCTION_CANDIDATE
CANDIDATE_DIM = "candidate"
DATE_DIM = "traffic_date"

# The first day a user may backfill; set DEPSIM_START_DATE for older logs.
START_DATE = os.environ.get("DEPSIM_START_DATE", "2025-01-01")

traffic_date = dg.DailyPartitionsDefinition(start_date=START_DATE)
candidate = dg.DynamicPartitionsDefinition(name=CANDIDATE_DIM)
candidate_by_date = dg.MultiPartitionsDefinition({CANDIDATE_DIM: candidate, DATE_DIM: traffic_date})


def split_key(context: dg.AssetExecutionContext) -> tuple[str, str]:
    """Return ``(candidate, traffic_date)`` of a ``candidate_by_date`` run."""
    key = context.partition_key
    if isinstance(key, dg.MultiPartitionKey):
        dims = key.keys_by_dimension
    else:  # a plain "candidate|date" string, as the CLI passes it
        cand, _, day = str(key).partition("|")
        dims = {CANDIDATE_DIM: cand, DATE_DIM: day}
    return dims[CANDIDATE_DIM], dims[DATE_DIM]


def multi_key(candidate_name: str, day: str) -> dg.MultiPartitionKey:
    """The ``candidate_by_date`` key of one candidate and day."""
    return dg.MultiPartitionKey({CANDIDATE_DIM: candidate_name, DATE_DIM: day})
