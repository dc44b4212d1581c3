"""Running depsim like production: candidates appear, days arrive, missed days catch up.

Four pieces, each a plain Dagster schedule or sensor whose ticks list exactly what they
requested (the UI's tick history is the audit trail):

- ``candidate_registry_sensor`` keeps the ``candidate`` partitions in step with
  ``candidates.yaml``: adds new entries (and ``production``), deletes the partitions of
  retired or removed ones (their warehouse rows stay), and requests a ``candidate_day`` run
  for each new candidate on each recent day whose ``conversation_prefixes`` exist.
- ``daily_traffic_schedule`` (cron and time zone from the environment) requests a
  ``traffic_day`` run for the previous day, plus every day of the look-back window that has
  no ``conversation_prefixes`` yet (a missed day is caught up on the next tick).
- ``new_day_sensor`` watches ``conversation_prefixes`` materializations and requests a
  ``candidate_day`` run (replay, grading, rates) for every active candidate on that day.
- ``comparison_sensor`` refreshes the unpartitioned comparison assets once new
  ``behavior_rates`` have landed and no run or backfill is still queued or in progress.

Why a schedule and sensors rather than declarative automation (``AutomationCondition``):
the candidate assets are partitioned by a multi key with a dynamic dimension, and the work
has rules a condition cannot state plainly — "new candidate: only the configured recent
days", "only days whose log folder exists", "a day the CLI already planned is left alone",
"one run per candidate-day, never one run per asset". Written as sensors, each rule is a
few lines of Python with a test that evaluates a tick at a fixed clock and asserts the
exact run requests; run keys make a repeated tick request nothing twice.

Settings (read from the environment):

- ``DEPSIM_SCHEDULE_CRON`` (default ``0 2 * * *``) and ``DEPSIM_SCHEDULE_TZ`` (default
  ``UTC``): when the daily schedule ticks; read when the definitions load.
- ``DEPSIM_CATCHUP_DAYS`` (default 7): the schedule's look-back window, ending yesterday.
- ``DEPSIM_RECENT_DAYS`` (default 7): the days, ending yesterday in ``DEPSIM_SCHEDULE_TZ``
  (or on the partitions' last day when they end earlier: a demo home), a newly registered
  candidate is run on.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dagster as dg
from dagster._core.execution.backfill import BulkActionStatus  # not re-exported publicly

from depsim_assets.partitions import (
    CANDIDATE_ASSETS,
    CANDIDATE_DIM,
    COMPARISON_ASSETS,
    END_DATE,
    PRODUCTION,
    START_DATE,
    TRAFFIC_ASSETS,
    candidate,
    candidate_by_date,
    multi_key,
    traffic_date,
)
from depsim_assets.registry import Registry, generation_fingerprint
from depsim_assets.resources import CandidateRegistry, TrafficSource
from depsim_assets.traffic.logs import day_folder

CRON_ENV = "DEPSIM_SCHEDULE_CRON"
TZ_ENV = "DEPSIM_SCHEDULE_TZ"
CATCHUP_ENV = "DEPSIM_CATCHUP_DAYS"
RECENT_ENV = "DEPSIM_RECENT_DAYS"
DEFAULT_CRON = "0 2 * * *"
DEFAULT_TZ = "UTC"
DEFAULT_DAYS = 7

SOURCE_TAG = "depsim/source"  # who launched a run; the CLI sets "cli"
# Asset keys by name: automation spans the stages and imports none of their assets.
PREFIXES = dg.AssetKey("conversation_prefixes")  # a day is sampled and cut
REPLAY = dg.AssetKey("candidate_completions")  # the first asset of a candidate-day run
RATES = dg.AssetKey("behavior_rates")  # the last of a candidate-day run: present means done
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]

traffic_day_job = dg.define_asset_job(
    "traffic_day",
    selection=dg.AssetSelection.assets(*TRAFFIC_ASSETS),
    partitions_def=traffic_date,
    description="Sample, de-identify and cut prefixes for one day of traffic.",
)
candidate_day_job = dg.define_asset_job(
    "candidate_day",
    selection=dg.AssetSelection.assets(*CANDIDATE_ASSETS),
    partitions_def=candidate_by_date,
    description="Replay, grade and rate one candidate on one day (key candidate|YYYY-MM-DD).",
)

comparison_job = dg.define_asset_job(
    "comparison",
    selection=dg.AssetSelection.assets(*COMPARISON_ASSETS),
    description="Compare every candidate with the baseline over all graded days.",
)


# ----------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Settings:
    """Automation settings, validated; every problem names its environment variable."""

    cron: str = DEFAULT_CRON
    timezone: str = DEFAULT_TZ
    catchup_days: int = DEFAULT_DAYS
    recent_days: int = DEFAULT_DAYS


def _env_days(name: str) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return DEFAULT_DAYS
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number of days") from None
    if not 0 <= value <= 366:
        raise ValueError(f"{name}={value} must be between 0 and 366 days")
    return value


def _check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{TZ_ENV}={name!r} is not an IANA time zone (e.g. UTC)") from None
    return name


def settings_from_env() -> Settings:
    """Read and check the automation settings from the environment."""
    return Settings(
        cron=os.environ.get(CRON_ENV, "").strip() or DEFAULT_CRON,
        timezone=_check_timezone(os.environ.get(TZ_ENV, "").strip() or DEFAULT_TZ),
        catchup_days=_env_days(CATCHUP_ENV),
        recent_days=_env_days(RECENT_ENV),
    )


def now_utc() -> dt.datetime:
    """The current time (a seam: tests fix the clock here)."""
    return dt.datetime.now(dt.UTC)


def days_before(today: dt.date, n: int) -> list[str]:
    """The ``n`` days before ``today`` (today excluded: its traffic is not complete), oldest
    first, within the partitions: never before the first (``DEPSIM_START_DATE``), and when
    the partitions end (a demo home's ``partitions.yaml``), the ``n`` days up to the last one,
    so a candidate added to a demo home weeks later still runs on the demo's days."""
    first = dt.date.fromisoformat(START_DATE)
    if END_DATE is not None:
        today = min(today, dt.date.fromisoformat(END_DATE) + dt.timedelta(days=1))
    days = [today - dt.timedelta(days=i) for i in range(n, 0, -1)]
    return [d.isoformat() for d in days if d >= first]


# ------------------------------------------------------------------------------------ queries
def _latest_id(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str) -> int | None:
    """Storage id of the partition's latest materialization (ids grow with time)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
    ).records
    return records[0].storage_id if records else None


def _in_flight(instance: dg.DagsterInstance, partition: str) -> bool:
    """Whether a queued or running run (of any job, the CLI's too) has this partition."""
    runs = instance.get_run_records(
        dg.RunsFilter(statuses=IN_FLIGHT, tags={"dagster/partition": partition}), limit=1
    )
    return bool(runs)


def needs_run(instance: dg.DagsterInstance, name: str, day: str, prefixes_id: int) -> bool:
    """A candidate-day needs a run unless its rates are newer than the day's prefixes, or a
    run for it is already queued or running."""
    key = str(multi_key(name, day))
    rates_id = _latest_id(instance, RATES, key)
    if rates_id is not None and rates_id > prefixes_id:
        return False
    return not _in_flight(instance, key)


def _candidate_request(name: str, day: str, run_key: str, source: str) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=run_key,
        job_name=candidate_day_job.name,
        partition_key=multi_key(name, day),
        tags={SOURCE_TAG: source},
    )


# ------------------------------------------------------------------------------------ sensors
def missing_partitions(registered: Sequence[str], existing: Sequence[str]) -> list[str]:
    """Candidate partitions to add: every registered name and ``production`` not yet known."""
    wanted = [PRODUCTION, *registered]
    known = set(existing)
    return [name for name in wanted if name not in known]


def retired_partitions(registered: Sequence[str], existing: Sequence[str]) -> list[str]:
    """Candidate partitions to delete: known but no longer active (``production`` stays)."""
    wanted = {PRODUCTION, *registered}
    return [name for name in existing if name not in wanted]


def _no_registry(registry: CandidateRegistry) -> dg.SkipReason | None:
    """A fresh home folder has no registry yet: nothing to do, which is not a failure."""
    if Path(registry.path).exists():
        return None
    return dg.SkipReason(
        f"no registry at {registry.path} yet (`depsim candidates add` or `depsim demo`)"
    )


def _entry_fingerprint(registry: Registry, name: str) -> str:
    if name == PRODUCTION:
        return PRODUCTION
    return generation_fingerprint([registry.get(name)])


@dg.sensor(
    name="candidate_registry_sensor",
    job=candidate_day_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Keeps candidate partitions in step with candidates.yaml: adds new entries, retires "
        "removed or retired ones (their data stays), and runs each new candidate (also one "
        "`depsim candidates add` registered, until it has run) on the recent days "
        f"(${RECENT_ENV}) that have conversation_prefixes."
    ),
)
def candidate_registry_sensor(
    context: dg.SensorEvaluationContext, registry: CandidateRegistry
) -> dg.SensorResult | dg.SkipReason:
    """Add new candidates, retire removed ones, and run the new ones on the recent days.

    "New" is new to this sensor: its cursor lists the candidates it has handled (on its first
    tick, those that already have a partition). A candidate without a partition is added and
    run. One that already has a partition (``depsim candidates add`` registers it at once) is
    run too, unless someone already ran it (it has ``behavior_rates``: whoever did plans its
    days) or a depsim CLI run is in flight (the CLI may be planning it; the next tick looks
    again). An invalid registry (or setting) raises before anything is requested, so the
    tick fails with the reason and changes nothing.
    """
    settings = settings_from_env()
    if skip := _no_registry(registry):
        return skip
    loaded = registry.load()
    active = loaded.names()
    existing = context.instance.get_dynamic_partitions(CANDIDATE_DIM)
    handled = set(json.loads(context.cursor)) if context.cursor else set(existing)
    missing = missing_partitions(active, existing)
    gone = retired_partitions(active, existing)
    unseen = [n for n in [PRODUCTION, *active] if n not in handled and n not in missing]
    to_run = list(missing)
    waiting = []
    if unseen:
        ran = {key.split("|", 1)[0] for key in context.instance.get_materialized_partitions(RATES)}
        cli_busy = bool(
            context.instance.get_run_records(
                dg.RunsFilter(statuses=IN_FLIGHT, tags={SOURCE_TAG: "cli"}), limit=1
            )
        )
        for name in unseen:
            if name in ran:
                handled.add(name)
            elif cli_busy:
                waiting.append(name)
            else:
                to_run.append(name)
    handled = (handled | set(to_run)) & {PRODUCTION, *active}
    cursor = json.dumps(sorted(handled))
    if not to_run and not gone:
        context.update_cursor(cursor)
        if waiting:
            return dg.SkipReason(f"{waiting} wait for the depsim CLI's runs to finish")
        return dg.SkipReason(f"all {len(active)} active candidates have partitions")

    today = now_utc().astimezone(ZoneInfo(settings.timezone)).date()
    days = days_before(today, settings.recent_days)
    prefixes = {d: i for d in days if (i := _latest_id(context.instance, PREFIXES, d))}
    requests = []
    for name in to_run:
        fingerprint = _entry_fingerprint(loaded, name)
        for day, prefixes_id in prefixes.items():
            if needs_run(context.instance, name, day, prefixes_id):
                run_key = f"{name}|{day}|{prefixes_id}|{fingerprint}"
                requests.append(_candidate_request(name, day, run_key, "registry_sensor"))
    partition_requests: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest]
    partition_requests = []
    if missing:
        partition_requests.append(candidate.build_add_request(missing))
    if gone:
        # Only the partition goes; rows in the warehouse and past materializations stay.
        partition_requests.append(candidate.build_delete_request(gone))
    context.log.info(
        f"adding {missing or 'none'}, running {to_run or 'none'}, retiring {gone or 'none'}; "
        f"{len(requests)} runs over {sorted(prefixes) or 'no days with prefixes'}"
        + (f"; {waiting} wait for the depsim CLI's runs" if waiting else "")
    )
    return dg.SensorResult(
        run_requests=requests, dynamic_partitions_requests=partition_requests, cursor=cursor
    )


def _launched_by_cli(instance: dg.DagsterInstance, run_id: str, cache: dict[str, bool]) -> bool:
    if run_id not in cache:
        run = instance.get_run_by_id(run_id) if run_id else None
        cache[run_id] = run is not None and run.tags.get(SOURCE_TAG) == "cli"
    return cache[run_id]


def _downstream_planned(instance: dg.DagsterInstance, run_id: str, cache: dict[str, bool]) -> bool:
    """Whether the run that wrote a day's prefixes also planned its candidate runs: a depsim
    CLI run, or part of a backfill (UI or ``depsim backfill``) that targets the candidate
    assets. A backfill of traffic alone leaves the candidates to the sensor."""
    if run_id not in cache:
        run = instance.get_run_by_id(run_id) if run_id else None
        planned = run is not None and run.tags.get(SOURCE_TAG) == "cli"
        backfill_id = run.tags.get("dagster/backfill") if run is not None else None
        if not planned and backfill_id:
            backfill = instance.get_backfill(backfill_id)
            selection = (backfill.asset_selection if backfill is not None else None) or []
            planned = REPLAY in selection
        cache[run_id] = planned
    return cache[run_id]


@dg.sensor(
    name="new_day_sensor",
    job=candidate_day_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "When a day's conversation_prefixes materialize, runs replay, grading and rates for "
        "production and every active candidate on that day."
    ),
)
def new_day_sensor(
    context: dg.SensorEvaluationContext, registry: CandidateRegistry
) -> dg.SensorResult | dg.SkipReason:
    """Request a ``candidate_day`` run per active candidate for each newly prefixed day.

    The cursor is the storage id of the last prefixes materialization handled. Days
    materialized by the depsim CLI, or by a backfill that also targets the candidate assets,
    are skipped (they plan their own candidate runs), and a candidate-day whose rates are
    already newer than its prefixes, or that has a run queued or in progress, is not
    requested again. An invalid registry fails the tick and leaves the cursor where it was.
    """
    after = int(context.cursor) if context.cursor else None
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=PREFIXES, after_storage_id=after),
        limit=500,
        ascending=True,
    ).records
    if not records:
        return dg.SkipReason("no new conversation_prefixes materializations")
    if skip := _no_registry(registry):
        return skip  # the cursor stays: these days run once a registry exists
    loaded = registry.load()
    have_partition = set(context.instance.get_dynamic_partitions(CANDIDATE_DIM))
    # Candidates without a partition yet are the registry sensor's to run once it adds them.
    names = [n for n in [PRODUCTION, *loaded.names()] if n in have_partition]
    latest: dict[str, int] = {}
    planned: dict[str, bool] = {}
    skipped_cli: set[str] = set()
    for record in records:
        day = record.partition_key
        if day is None:
            continue
        if _downstream_planned(context.instance, record.run_id, planned):
            skipped_cli.add(day)
            latest.pop(day, None)
            continue
        latest[day] = record.storage_id
    requests = [
        _candidate_request(name, day, f"{name}|{day}|{prefixes_id}", "new_day_sensor")
        for day, prefixes_id in sorted(latest.items())
        for name in names
        if needs_run(context.instance, name, day, prefixes_id)
    ]
    cursor = str(records[-1].storage_id)
    if skipped_cli:
        context.log.info(f"left to the CLI or backfill that planned them: {sorted(skipped_cli)}")
    if not requests:
        context.update_cursor(cursor)
        return dg.SkipReason(f"nothing to run for {sorted(latest) or sorted(skipped_cli)}")
    return dg.SensorResult(run_requests=requests, cursor=cursor)


def _instance_busy(instance: dg.DagsterInstance) -> bool:
    """Any run queued or in progress, or a backfill still submitting runs."""
    statuses = [*IN_FLIGHT, dg.DagsterRunStatus.CANCELING]
    if instance.get_run_records(dg.RunsFilter(statuses=statuses), limit=1):
        return True
    return bool(instance.get_backfills(status=BulkActionStatus.REQUESTED, limit=1))


@dg.sensor(
    name="comparison_sensor",
    job=comparison_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Refreshes candidate_comparison, forecast_validation and novel_behaviors after new "
        "behavior_rates, once no run or backfill is queued or in progress."
    ),
)
def comparison_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    """One comparison run per settled batch of new rates.

    Waiting until no run or backfill is in flight turns a day's (or a backfill's) many rates
    into one comparison instead of one per candidate-day, and keeps the comparison (which
    reads every grade) from competing with writers for the warehouse. Rates written by the depsim
    CLI are skipped: the CLI runs its own comparison.
    """
    after = int(context.cursor) if context.cursor else None
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=RATES, after_storage_id=after), limit=1000, ascending=True
    ).records
    if not records:
        return dg.SkipReason("no new behavior_rates")
    if _instance_busy(context.instance):
        return dg.SkipReason("waiting for queued or running runs and backfills to finish")
    cursor = str(records[-1].storage_id)
    by_cli: dict[str, bool] = {}
    if all(_launched_by_cli(context.instance, r.run_id, by_cli) for r in records):
        context.update_cursor(cursor)
        return dg.SkipReason("new rates came from the depsim CLI, which compares them itself")
    request = dg.RunRequest(run_key=f"rates-{cursor}", tags={SOURCE_TAG: "comparison_sensor"})
    return dg.SensorResult(run_requests=[request], cursor=cursor)


# ----------------------------------------------------------------------------------- schedule
def traffic_requests(
    instance: dg.DagsterInstance,
    *,
    now: dt.datetime,
    settings: Settings,
    log_root: str,
) -> tuple[list[dg.RunRequest], dict[str, list[str]]]:
    """The schedule's decision at ``now``: runs for yesterday and for missed days.

    Yesterday (in the schedule's time zone) and each earlier day of the look-back window are
    requested unless their ``conversation_prefixes`` are materialized, a run for them is
    queued or running, their log folder does not exist yet, or the day's partition does not
    exist yet at ``now``. Returns the requests and the days left out, by reason.
    """
    local = now.astimezone(ZoneInfo(settings.timezone))
    yesterday = (local.date() - dt.timedelta(days=1)).isoformat()
    window = days_before(local.date(), max(settings.catchup_days, 1))
    open_days = set(traffic_date.get_partition_keys(current_time=now))
    done = instance.get_materialized_partitions(PREFIXES)
    requests: list[dg.RunRequest] = []
    left_out: dict[str, list[str]] = {}
    for day in window:
        if day in done:
            reason = "materialized"
        elif day not in open_days:
            reason = "partition not open yet"
        elif _in_flight(instance, day):
            reason = "run in progress"
        elif not day_folder(log_root, day).is_dir():
            reason = "no log folder"
        else:
            reason = ""
            requests.append(
                dg.RunRequest(
                    run_key=day,
                    partition_key=day,
                    tags={SOURCE_TAG: "schedule", "depsim/catch_up": str(day != yesterday)},
                )
            )
        if reason:
            left_out.setdefault(reason, []).append(day)
    return requests, left_out


def build_traffic_schedule(settings: Settings | None = None) -> dg.ScheduleDefinition:
    """The daily traffic schedule, with cron and time zone from ``settings`` (or the env)."""
    settings = settings or settings_from_env()

    def daily_traffic_schedule(
        context: dg.ScheduleEvaluationContext, traffic: TrafficSource
    ) -> list[dg.RunRequest] | dg.SkipReason:
        """Request yesterday's traffic and every missed day of the look-back window."""
        now = context.scheduled_execution_time or now_utc()
        requests, left_out = traffic_requests(
            context.instance, now=now, settings=settings, log_root=traffic.log_root
        )
        summary = "; ".join(f"{why}: {', '.join(days)}" for why, days in left_out.items())
        if not requests:
            return dg.SkipReason(f"no day to sample ({summary or 'empty window'})")
        context.log.info(f"requesting {[r.partition_key for r in requests]} ({summary or '-'})")
        return requests

    try:
        return dg.schedule(
            name="daily_traffic_schedule",
            cron_schedule=settings.cron,
            execution_timezone=settings.timezone,
            job=traffic_day_job,
            default_status=dg.DefaultScheduleStatus.RUNNING,
            description=(
                f"Samples yesterday's traffic ({settings.cron}, {settings.timezone}) and catches "
                f"up days of the last {settings.catchup_days} without conversation_prefixes."
            ),
        )(daily_traffic_schedule)
    except dg.DagsterInvalidDefinitionError as exc:
        raise ValueError(f"{CRON_ENV}={settings.cron!r}: {exc}") from None


def automation_definitions(
    settings: Settings | None = None,
) -> tuple[
    list[dg.UnresolvedAssetJobDefinition], list[dg.ScheduleDefinition], list[dg.SensorDefinition]
]:
    """Jobs, schedules and sensors for ``Definitions``."""
    return (
        [traffic_day_job, candidate_day_job, comparison_job],
        [build_traffic_schedule(settings)],
        [candidate_registry_sensor, new_day_sensor, comparison_sensor],
    )
