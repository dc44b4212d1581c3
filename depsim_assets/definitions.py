"""The Dagster code location: every stage's definitions, merged, on the embedded defaults.

Each stage folder declares its own assets and checks in ``<stage>/definitions.py``; this
module merges them (``STAGES``, one line per stage) and adds what spans stages: the resources,
the executor, and the jobs, schedule and sensors of :mod:`depsim_assets.automation`. Which
assets run together is named once, in :data:`depsim_assets.partitions.RUN_GROUPS`.

Paths come from the depsim home folder (``$DEPSIM_HOME``, default ``./.depsim``); the judge
from the ``DEPSIM_JUDGE_*`` variables (``resources.JUDGE_ENV``: endpoint, model, key variable,
timeout, concurrency, retries, output mode, context window, layout...; default: the built-in
simulator's ``sim-judge``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import dagster as dg

from depsim_assets import config
from depsim_assets.automation import automation_definitions
from depsim_assets.config import env_float, log_root, registry_path, warehouse_path
from depsim_assets.estimates import definitions as estimates
from depsim_assets.estimates.guard import blocking_checks
from depsim_assets.judging import definitions as judging
from depsim_assets.partitions import RUN_GROUPS
from depsim_assets.replay import definitions as replay
from depsim_assets.resources import (
    CandidateRegistry,
    JudgeEndpoint,
    RealismDiscriminator,
    RunBudget,
    ToolSimulator,
    TrafficSource,
    Warehouse,
)
from depsim_assets.traffic import definitions as traffic
from depsim_assets.warehouse import LOCK_TIMEOUT_S, URL_ENV, warehouse_url

# Every stage, in flow order. A new stage is a folder with a definitions.py and a line here.
STAGES: tuple[dg.Definitions, ...] = (traffic.defs, replay.defs, judging.defs, estimates.defs)



def _definitions(stage: dg.Definitions) -> list[dg.AssetsDefinition]:
    """A stage's assets and asset checks, as ``dg.materialize`` takes them."""
    items: list[dg.AssetsDefinition] = []
    for item in (*(stage.assets or ()), *(stage.asset_checks or ())):
        if not isinstance(item, dg.AssetsDefinition):
            raise TypeError(f"a stage lists {item!r}: only assets and asset checks belong there")
        items.append(item)
    return items


# Every asset and asset check of every stage. Checks are listed with the assets so that
# `dg.materialize(ASSETS, selection=...)` runs each with the partition of the asset it checks.
ASSETS = [item for stage in STAGES for item in _definitions(stage)]

# Assets the code location shows only when a setting is present: without it they can only
# fail, and they would make "Materialize all" fail on a fresh home folder.
SHOWN_WHEN_SET = {dg.AssetKey("judge_agreement"): "DEPSIM_JUDGE_LABELS"}

STEPS_ENV = "DEPSIM_MAX_CONCURRENT_STEPS"

DEMO_SALT = config.DEMO_SALT  # `depsim demo` sets it explicitly; nothing else defaults to it


def check_run_groups(assets: Iterable[object]) -> None:
    """Refuse to load when a run group (``partitions.RUN_GROUPS``) names an asset no stage
    declares, or one not on the group's partitions: a renamed asset would otherwise surface
    as a failed run or an empty job much later."""
    partitions: dict[dg.AssetKey, dg.PartitionsDefinition | None] = {}
    for item in assets:
        if isinstance(item, dg.AssetsDefinition):
            partitions.update(dict.fromkeys(item.keys, item.partitions_def))
    for group, (names, expected) in RUN_GROUPS.items():
        for name in names:
            key = dg.AssetKey(name)
            if key not in partitions:
                raise ValueError(f"run group {group!r} names {name!r}, which no stage declares")
            if partitions[key] != expected:
                raise ValueError(
                    f"run group {group!r}: {name!r} is not partitioned like the rest of the group"
                )


def build_resources() -> dict[str, object]:
    """Resources on the embedded defaults, read from the environment at call time."""
    warehouse = warehouse_path()
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    salt_env = config.SALT_ENV
    return {
        "warehouse": Warehouse(
            database=str(warehouse),
            lock_timeout_s=env_float("DEPSIM_LOCK_TIMEOUT_S", low=0.0) or LOCK_TIMEOUT_S,
            # Postgres when DEPSIM_WAREHOUSE_URL is set; an EnvVar, so a password in the URL
            # never shows in the UI's resource config.
            url=dg.EnvVar(URL_ENV) if warehouse_url() else None,
        ),
        "traffic": TrafficSource(
            log_root=str(log_root()),
            # No default: an unset salt fails the sampling step with how to make one.
            deid_salt=dg.EnvVar(salt_env) if os.environ.get(salt_env) else "",
        ),
        "registry": CandidateRegistry(path=str(registry_path())),
        # Every judge setting from its DEPSIM_JUDGE_* variable (resources.JUDGE_ENV), resolved
        # again when a run overrides part of the judge's config, so the two cannot disagree.
        "judge": JudgeEndpoint(),
        "tool_simulator": ToolSimulator(),  # DEPSIM_TOOLSIM_* (resources.TOOLSIM_ENV)
        "realism_discriminator": RealismDiscriminator(),  # DEPSIM_DISCRIMINATOR_*
        "budget": RunBudget(max_usd=env_float("DEPSIM_RUN_BUDGET_USD", low=0.0)),
        # Which checks a comparison must look at, from every stage's definitions: the
        # comparison's stage reads them here instead of importing the stages that declare them.
        "blocking_checks": blocking_checks(ASSETS),
    }


def _shown(stage: dg.Definitions, hidden: set[dg.AssetKey]) -> dg.Definitions:
    """``stage`` without the assets in ``hidden`` (the stage itself when it has none)."""

    def keep(item: object) -> bool:
        return not (isinstance(item, dg.AssetsDefinition) and hidden & set(item.keys))

    assets = list(stage.assets or ())
    if all(keep(a) for a in assets):
        return stage
    return dg.Definitions(
        assets=[a for a in assets if keep(a)],
        asset_checks=stage.asset_checks,
        jobs=stage.jobs,
        schedules=stage.schedules,
        sensors=stage.sensors,
    )


def build_definitions() -> dg.Definitions:
    """The whole code location: the stages' definitions merged with the resources, the
    executor and automation (settings read from the environment now).

    An asset of :data:`SHOWN_WHEN_SET` is shown only when its setting is present
    (``judge_agreement``: a labels file, ``DEPSIM_JUDGE_LABELS``).
    """
    check_run_groups(ASSETS)
    hidden = {key for key, env in SHOWN_WHEN_SET.items() if not os.environ.get(env)}
    # The daily schedule, the registry and new-day sensors, and the jobs they launch.
    jobs, schedules, sensors = automation_definitions()
    top = dg.Definitions(
        resources=build_resources(),
        jobs=jobs,
        schedules=schedules,
        sensors=sensors,
        executor=build_executor(),
    )
    return dg.Definitions.merge(*(_shown(stage, hidden) for stage in STAGES), top)


def build_executor() -> dg.ExecutorDefinition:
    """Dagster's multiprocess executor by default; ``DEPSIM_EXECUTOR=celery`` instead.

    Multiprocess: every step its own process, at most ``$DEPSIM_MAX_CONCURRENT_STEPS``
    (default 2) at once per run. Steps are forked from a forkserver that has imported this
    module once, so a step does not pay the import again. Runs launched from the UI, the
    daemon (backfills, sensors) and ``dagster job``/``asset`` commands use it;
    ``dg.materialize`` (the ``depsim`` commands) runs in process. Parallel steps and runs share
    the warehouse file through :class:`~depsim_assets.resources.Warehouse`, which waits its
    turn for DuckDB's lock.

    Celery (:func:`celery_settings`): each step is a task on the broker, run by whichever
    ``dagster-celery worker`` takes it (docs/scale.md); the run process only orchestrates.
    """
    celery = celery_settings()
    if celery is not None:
        from dagster_celery import celery_executor  # only deployments that use it import celery

        return celery_executor.configured(celery, name="depsim_celery")
    raw = os.environ.get(STEPS_ENV, "").strip() or "2"
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{STEPS_ENV}={raw!r}: expected a whole number >= 1")
    return dg.multiprocess_executor.configured(
        # Preload named explicitly: an empty forkserver config preloads only dagster, and
        # every step process then imports the code location again (~5 s of CPU each).
        {
            "max_concurrent": int(raw),
            "start_method": {"forkserver": {"preload_modules": [__name__]}},
        },
        name="depsim_multiprocess",
    )


EXECUTOR_ENV = "DEPSIM_EXECUTOR"
CELERY_BROKER_ENV = "DEPSIM_CELERY_BROKER"
CELERY_BACKEND_ENV = "DEPSIM_CELERY_BACKEND"


def celery_settings() -> dict[str, object] | None:
    """The celery executor's config when ``$DEPSIM_EXECUTOR`` is ``celery`` (else None):
    broker ``$DEPSIM_CELERY_BROKER`` (required, e.g. ``redis://host:6379/0``), result backend
    ``$DEPSIM_CELERY_BACKEND`` (default: the broker). The workers must be started with the same
    two URLs (``dagster-celery worker start -y``)."""
    kind = os.environ.get(EXECUTOR_ENV, "").strip().lower() or "multiprocess"
    if kind == "multiprocess":
        return None
    if kind != "celery":
        raise ValueError(f"{EXECUTOR_ENV}={kind!r}: expected multiprocess or celery")
    broker = os.environ.get(CELERY_BROKER_ENV, "").strip()
    if not broker:
        raise ValueError(f"{EXECUTOR_ENV}=celery needs {CELERY_BROKER_ENV} (the broker URL)")
    backend = os.environ.get(CELERY_BACKEND_ENV, "").strip() or broker
    return {"broker": broker, "backend": backend}


defs = build_definitions()
