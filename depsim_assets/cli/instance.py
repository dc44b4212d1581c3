"""The Dagster instance the CLI, ``depsim ui`` and the daemon share: ``$DAGSTER_HOME``.

Created on first use with depsim's ``dagster.yaml``. depsim runs offline and handles private
traffic, so a new instance does not phone home. Runs from the UI, sensors and backfills wait
in a queue and at most four run at once; every step of a run is its own process
(DEPSIM_MAX_CONCURRENT_STEPS per run, see definitions.build_executor), and all of them share
the warehouse file, waiting their turn for its lock (resources.Warehouse).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from depsim_assets import config

if TYPE_CHECKING:
    import dagster as dg

INSTANCE_YAML = """\
# Written by depsim; yours to edit (depsim rewrites only its own unedited older defaults).
telemetry:
  enabled: false
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 2
concurrency:
  runs:
    max_concurrent_runs: 4
"""
# What earlier depsim versions wrote: upgraded in place, since nobody edited it.
OLD_INSTANCE_YAMLS = ("telemetry:\n  enabled: false\n",)


def prepare_dagster_home() -> Path:
    """The Dagster home folder, created with depsim's ``dagster.yaml`` if it has none."""
    home = config.dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    settings = home / "dagster.yaml"
    if not settings.exists() or settings.read_text() in OLD_INSTANCE_YAMLS:
        settings.write_text(INSTANCE_YAML)
    return home


def get_instance() -> dg.DagsterInstance:
    """The persistent instance under the Dagster home (prepared first); ``DAGSTER_HOME`` is
    set for this process so every run it launches uses the same one."""
    import dagster as dg

    os.environ["DAGSTER_HOME"] = str(prepare_dagster_home())
    return dg.DagsterInstance.get()


def recorded_instance() -> dg.DagsterInstance | None:
    """The instance, if this home has one yet (nothing is created otherwise)."""
    return get_instance() if (config.dagster_home() / "dagster.yaml").exists() else None
