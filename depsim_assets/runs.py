"""Materializing partitions from Python (the CLI and tests): one run per partition group.

Each run executes the named job of its run group (``traffic_day``, ``candidate_day`` or
``comparison``, the jobs the schedule and sensors launch), in process, so a CLI run shows in
the UI's run list under that job rather than as ``__ephemeral_asset_job__``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from depsim_assets.automation import candidate_day_job, comparison_job, traffic_day_job
from depsim_assets.definitions import ASSETS, build_resources
from depsim_assets.partitions import (
    CANDIDATE_ASSETS,
    CANDIDATE_DIM,
    COMPARISON_ASSETS,
    PRODUCTION,
    RUN_GROUPS,
    TRAFFIC_ASSETS,
    multi_key,
)

# The run groups are named once, in partitions.RUN_GROUPS; re-exported for the CLI.
__all__ = [
    "CANDIDATE_ASSETS",
    "COMPARISON_ASSETS",
    "TRAFFIC_ASSETS",
    "PlannedRun",
    "RunFailed",
    "ensure_candidate_partitions",
    "execute",
    "plan_graph",
]


# The job each run group executes as; every group of partitions.RUN_GROUPS has one.
GROUP_JOBS = {
    "traffic": traffic_day_job,
    "candidate": candidate_day_job,
    "comparison": comparison_job,
}
if set(GROUP_JOBS) != set(RUN_GROUPS):
    raise ValueError(
        f"runs.GROUP_JOBS names {sorted(GROUP_JOBS)}, the run groups {sorted(RUN_GROUPS)}"
    )


def job_name(assets: Sequence[str]) -> str:
    """The named job a run of ``assets`` executes as: that of the run group holding them all."""
    for group, (names, _) in RUN_GROUPS.items():
        if set(assets) <= set(names):
            return GROUP_JOBS[group].name
    raise ValueError(f"no run group holds all of {', '.join(assets)}: one run is one group")


class RunFailed(RuntimeError):
    """A materialization failed; the message is the underlying error, one line."""


@dataclass(frozen=True)
class PlannedRun:
    """One run: which assets, for which partition key (None: unpartitioned)."""

    label: str
    assets: tuple[str, ...]
    partition_key: str | None
    run_config: dict[str, Any] | None = None


def plan_graph(
    dates: Sequence[str],
    candidates: Sequence[str],
    *,
    sample_size: int | None = None,
    log_level: str | None = None,
) -> list[PlannedRun]:
    """Runs that materialize the whole graph for ``dates`` x (``production`` + candidates).

    ``log_level`` sets Dagster's console logger (the CLI keeps it at ERROR so the run log does
    not bury the progress bar; the events still reach the instance).
    """
    base: dict[str, Any] = {}
    if log_level:
        base["loggers"] = {"console": {"config": {"log_level": log_level}}}
    traffic: dict[str, Any] = dict(base)
    if sample_size is not None:
        traffic["ops"] = {"sampled_conversations": {"config": {"sample_size": sample_size}}}
    runs = [PlannedRun(f"traffic {d}", TRAFFIC_ASSETS, d, traffic or None) for d in dates]
    for name in [PRODUCTION, *[c for c in candidates if c != PRODUCTION]]:
        for day in dates:
            key = str(multi_key(name, day))
            runs.append(PlannedRun(f"{name} {day}", CANDIDATE_ASSETS, key, base or None))
    runs.append(PlannedRun("comparison", COMPARISON_ASSETS, None, base or None))
    return runs


def ensure_candidate_partitions(instance: dg.DagsterInstance, names: Sequence[str]) -> None:
    """Register ``production`` and ``names`` as candidate partitions (what the sensor does)."""
    existing = set(instance.get_dynamic_partitions(CANDIDATE_DIM))
    new = [n for n in [PRODUCTION, *names] if n not in existing]
    if new:
        instance.add_dynamic_partitions(CANDIDATE_DIM, new)


def _root_cause(exc: BaseException) -> BaseException:
    inner = getattr(exc, "user_exception", None)
    return inner if isinstance(inner, BaseException) else exc


def execute(
    runs: Sequence[PlannedRun],
    instance: dg.DagsterInstance,
    *,
    on_run: Callable[[PlannedRun], None] | None = None,
) -> None:
    """Materialize ``runs`` in order against ``instance``; stop at the first failure."""
    # Resources as the environment is now (tests and the CLI set it after import); each run
    # executes its group's job on them, with only the run's assets (and their checks).
    location = dg.Definitions(
        assets=ASSETS, jobs=list(GROUP_JOBS.values()), resources=build_resources()
    )
    for run in runs:
        job = location.resolve_job_def(job_name(run.assets))
        try:
            job.execute_in_process(
                run_config=run.run_config,
                instance=instance,
                partition_key=run.partition_key,
                asset_selection=[dg.AssetKey(name) for name in run.assets],
                tags={"depsim/source": "cli"},
            )
        except Exception as exc:  # noqa: BLE001 - reported as one line, chained for debugging
            cause = _root_cause(exc)
            lines = str(cause).splitlines() or [type(cause).__name__]
            # A failed blocking check names the asset and check on the following lines.
            first = " ".join(lines) if "blocking asset check" in lines[0] else lines[0]
            raise RunFailed(f"{run.label}: {type(cause).__name__}: {first}") from exc
        if on_run is not None:
            on_run(run)
