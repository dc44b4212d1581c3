"""Partitions, declared once and imported everywhere.

- ``traffic_date``: one partition per day of production traffic.
- ``candidate``: dynamic; one partition per registered candidate plus the reserved
  ``production`` (the original replies, no model call). A sensor keeps it in step with
  ``candidates.yaml``.
- ``candidate_by_date``: both at once. Dagster sorts dimension names, so a key reads
  ``candidate|YYYY-MM-DD``.

And the asset groups that run together, one run per partition of their definition, named
once here by asset key: the CLI's runs (``runs.py``), the jobs the schedule and sensors launch
(``automation.py``) and the backfill targets (``backfills.py``) all read them. The code
location checks, when it loads, that each names existing assets on the partitions it says.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable

import dagster as dg

from depsim_assets import config

PRODUCTION = config.PRODUCTION_CANDIDATE
CANDIDATE_DIM = "candidate"
DATE_DIM = "traffic_date"

# The first day a user may backfill (DEPSIM_START_DATE for older logs), and the last day when
# the partitions end (a demo home's partitions.yaml, or DEPSIM_END_DATE); see
# config.partition_window.
START_DATE, END_DATE = config.partition_window()

traffic_date = dg.DailyPartitionsDefinition(
    start_date=START_DATE,
    # Dagster's end is exclusive: the partitions stop after the last day.
    end_date=(dt.date.fromisoformat(END_DATE) + dt.timedelta(days=1)).isoformat()
    if END_DATE
    else None,
)
candidate = dg.DynamicPartitionsDefinition(name=CANDIDATE_DIM)
candidate_by_date = dg.MultiPartitionsDefinition({CANDIDATE_DIM: candidate, DATE_DIM: traffic_date})


def split_key(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext,
) -> tuple[str, str]:
    """Return ``(candidate, traffic_date)`` of a ``candidate_by_date`` run (of an asset or
    of a partitioned check)."""
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


# Which assets run together: one run per day, per candidate x day, and once over all days.
TRAFFIC_ASSETS = ("sampled_conversations", "conversation_prefixes", "tool_examples")
CANDIDATE_ASSETS = ("candidate_completions", "judge_grades", "behavior_rates")
COMPARISON_ASSETS = ("candidate_comparison", "forecast_validation", "novel_behaviors")
# group -> (its assets, the partitions each run of it covers one key of; None: unpartitioned)
RUN_GROUPS: dict[str, tuple[tuple[str, ...], dg.PartitionsDefinition | None]] = {
    "traffic": (TRAFFIC_ASSETS, traffic_date),
    "candidate": (CANDIDATE_ASSETS, candidate_by_date),
    "comparison": (COMPARISON_ASSETS, None),
}


def partitioned_asset_check(**kwargs) -> Callable[[Callable], dg.AssetChecksDefinition]:
    """``dg.asset_check`` without the preview warning a partitioned check raises on import:
    the checks here are per partition by nature, so it would only repeat on every import."""

    def wrap(fn: Callable) -> dg.AssetChecksDefinition:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dg.PreviewWarning)
            return dg.asset_check(**kwargs)(fn)

    return wrap
