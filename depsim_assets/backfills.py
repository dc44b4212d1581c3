"""Backfills: a range of days x candidates submitted to the Dagster instance as ONE backfill.

This is the backfill the UI makes when you select the assets, press "Materialize" and pick a
partition range: an asset backfill stored on the instance. The daemon (``dagster dev`` runs
one; or ``dagster-daemon run``) turns it into runs in dependency order: one run per day for
the traffic assets, then one run per candidate x day for replay, grading and rates. The run
queue (``concurrency.runs.max_concurrent_runs`` in ``dagster.yaml``) bounds how many run at
once, and the multiprocess executor runs each step in its own process; every one of them
waits its turn for the warehouse lock (:class:`~depsim_assets.resources.Warehouse`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import dagster as dg
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.definitions.events import AssetKeyPartitionKey
from dagster._core.execution.backfill import (
    BULK_ACTION_TERMINAL_STATUSES,
    BulkActionStatus,
    PartitionBackfill,
)

from depsim_assets.partitions import CANDIDATE_ASSETS, PRODUCTION, TRAFFIC_ASSETS, multi_key

# A daemon that has not reported for this long is taken as not running.
DAEMON_STALE_S = 60.0


class BackfillTimeout(RuntimeError):
    """A backfill was still running when the wait for it ended."""


def date_range(start: str, end: str) -> list[str]:
    """Every ISO day from ``start`` to ``end``, both included."""
    try:
        first, last = date.fromisoformat(start), date.fromisoformat(end)
    except ValueError as exc:
        raise ValueError(f"dates must be YYYY-MM-DD: {exc}") from None
    if last < first:
        raise ValueError(f"--to {end} is before --from {start}")
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def target_partitions(
    dates: Sequence[str], candidates: Sequence[str], *, traffic: bool = True
) -> set[AssetKeyPartitionKey]:
    """The (asset, partition) pairs a backfill of ``dates`` x ``candidates`` materializes."""
    pairs: set[AssetKeyPartitionKey] = set()
    if traffic:
        for name in TRAFFIC_ASSETS:
            pairs |= {AssetKeyPartitionKey(dg.AssetKey(name), d) for d in dates}
    for name in CANDIDATE_ASSETS:
        pairs |= {
            AssetKeyPartitionKey(dg.AssetKey(name), multi_key(c, d))
            for c in candidates
            for d in dates
        }
    return pairs


def submit_backfill(
    instance: dg.DagsterInstance,
    dates: Sequence[str],
    candidates: Sequence[str],
    *,
    traffic: bool = True,
    title: str | None = None,
) -> str:
    """Store an asset backfill of ``dates`` x ``candidates`` on ``instance``; return its id.

    ``candidates`` must already be partitions of the ``candidate`` dimension (the registry
    sensor or :func:`depsim_assets.runs.ensure_candidate_partitions` adds them).
    """
    from depsim_assets.definitions import defs

    known = set(instance.get_dynamic_partitions("candidate"))
    unknown = [c for c in candidates if c not in known]
    if unknown:
        raise ValueError(f"not candidate partitions yet: {', '.join(unknown)}")
    if not candidates and not traffic:
        raise ValueError("nothing to backfill: no candidates and traffic skipped")
    asset_graph = defs.resolve_asset_graph()
    subset = AssetGraphSubset.from_asset_partition_set(
        target_partitions(dates, candidates, traffic=traffic), asset_graph
    )
    backfill_id = uuid.uuid4().hex[:8]
    instance.add_backfill(
        PartitionBackfill.from_asset_graph_subset(
            backfill_id=backfill_id,
            backfill_timestamp=time.time(),
            tags={"depsim/source": "cli-backfill"},
            dynamic_partitions_store=instance,
            asset_graph_subset=subset,
            title=title or f"depsim backfill {dates[0]}..{dates[-1]}",
            description=f"{len(dates)} days x {', '.join(candidates) or 'traffic only'}",
            run_config=None,
        )
    )
    return backfill_id


def daemon_running(instance: dg.DagsterInstance) -> bool:
    """Whether a daemon that executes backfills reported in the last minute."""
    beat = instance.get_daemon_heartbeats().get("BACKFILL")
    return beat is not None and time.time() - beat.timestamp < DAEMON_STALE_S


@dataclass(frozen=True)
class BackfillStatus:
    """Where a backfill stands: its status, partitions done/failed, runs by status."""

    backfill_id: str
    status: str
    target: int
    materialized: int
    failed: int
    runs: dict[str, int]

    @property
    def done(self) -> bool:
        """The daemon is finished with it (succeeded, failed or canceled)."""
        return BulkActionStatus(self.status) in BULK_ACTION_TERMINAL_STATUSES

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "backfill_id": self.backfill_id,
            "status": self.status,
            "partitions_target": self.target,
            "partitions_materialized": self.materialized,
            "partitions_failed": self.failed,
            "runs": self.runs,
        }


def backfill_status(instance: dg.DagsterInstance, backfill_id: str) -> BackfillStatus:
    """The current :class:`BackfillStatus` of ``backfill_id``."""
    from depsim_assets.definitions import defs

    backfill = instance.get_backfill(backfill_id)
    if backfill is None:
        raise ValueError(f"no backfill {backfill_id!r} on this instance")
    data = backfill.get_asset_backfill_data(defs.resolve_asset_graph())
    runs: dict[str, int] = {}
    for record in instance.get_run_records(dg.RunsFilter(tags={"dagster/backfill": backfill_id})):
        key = record.dagster_run.status.value
        runs[key] = runs.get(key, 0) + 1
    return BackfillStatus(
        backfill_id=backfill_id,
        status=backfill.status.value,
        target=data.target_subset.num_partitions_and_non_partitioned_assets,
        materialized=data.materialized_subset.num_partitions_and_non_partitioned_assets,
        failed=data.failed_and_downstream_subset.num_partitions_and_non_partitioned_assets,
        runs=dict(sorted(runs.items())),
    )


def wait_for_backfill(
    instance: dg.DagsterInstance,
    backfill_id: str,
    *,
    timeout_s: float,
    poll_s: float = 2.0,
    on_poll: Callable[[BackfillStatus], None] | None = None,
) -> BackfillStatus:
    """Poll until the daemon is done with the backfill; raise :class:`BackfillTimeout` after
    ``timeout_s`` (the backfill itself goes on)."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = backfill_status(instance, backfill_id)
        if on_poll is not None:
            on_poll(status)
        if status.done:
            return status
        if time.monotonic() > deadline:
            raise BackfillTimeout(
                f"backfill {backfill_id} not finished after {timeout_s:.0f}s: "
                f"{status.materialized}/{status.target} partitions, runs {status.runs}"
            )
        time.sleep(poll_s)


def default_candidates(registered: Sequence[str]) -> list[str]:
    """``production`` and every registered candidate: what a backfill covers by default."""
    return [PRODUCTION, *[c for c in registered if c != PRODUCTION]]
