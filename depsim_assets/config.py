"""Where depsim keeps its files.

Everything depsim writes lives under one home folder, ``$DEPSIM_HOME`` (default ``./.depsim``):
the DuckDB warehouse, the production log folder, the candidate registry, the Dagster instance
and the reports. Paths are resolved when asked for, so a test or the CLI can point
``DEPSIM_HOME`` somewhere else before anything is read.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from pathlib import Path

# The reserved candidate name of the original replies (partitions.PRODUCTION); kept here so
# reading the registry does not import Dagster.
PRODUCTION_CANDIDATE = "production"

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def depsim_home() -> Path:
    """The home folder (absolute), from ``$DEPSIM_HOME`` or ``./.depsim``."""
    return Path(os.environ.get("DEPSIM_HOME", ".depsim")).expanduser().resolve()


def warehouse_path() -> Path:
    """The DuckDB warehouse file: ``$DEPSIM_WAREHOUSE`` or ``<home>/warehouse.duckdb``."""
    override = os.environ.get("DEPSIM_WAREHOUSE")
    return Path(override).expanduser().resolve() if override else depsim_home() / "warehouse.duckdb"


def registry_path() -> Path:
    """The candidate registry, ``<home>/candidates.yaml``."""
    return depsim_home() / "candidates.yaml"


def log_root() -> Path:
    """The production log: one folder per day of JSONL files, ``<home>/logs/production/<date>/``."""
    return depsim_home() / "logs" / "production"


def reports_dir() -> Path:
    """Where reports are written, ``<home>/reports``."""
    return depsim_home() / "reports"


def dagster_home() -> Path:
    """The Dagster instance folder used by the CLI: ``$DAGSTER_HOME`` or ``<home>/dagster``."""
    override = os.environ.get("DAGSTER_HOME")
    return Path(override).expanduser().resolve() if override else depsim_home() / "dagster"


SALT_ENV = "DEPSIM_DEID_SALT"
MIN_SALT_CHARS = 16
# Public (it is in this file): only `depsim demo` uses it, for its synthetic log.
DEMO_SALT = "depsim-demo-salt"
SALT_HOWTO = (
    "generate one with `python -c \"import secrets; print(secrets.token_hex(32))\"`, keep it "
    "in your secret store, and export it as DEPSIM_DEID_SALT for every depsim and Dagster "
    "process (see docs/secrets.md)"
)


def check_deid_salt(value: str | None) -> str:
    """``value`` if it is a usable de-identification salt, else a ``ValueError`` that names
    ``DEPSIM_DEID_SALT`` and says how to make one (never echoing the value).

    The salt keys every surrogate and user hash: with a public or short one, small value
    spaces (phone numbers, SSNs) can be reversed by hashing every candidate value.
    """
    if not value:
        raise ValueError(
            f"{SALT_ENV} is not set: sampling real traffic needs a secret salt; " + SALT_HOWTO
        )
    if len(value) < MIN_SALT_CHARS:
        raise ValueError(
            f"{SALT_ENV} is too short ({len(value)} characters, at least {MIN_SALT_CHARS}); "
            + SALT_HOWTO
        )
    return value


def deid_salt() -> str:
    """The de-identification salt from ``$DEPSIM_DEID_SALT``, checked (see
    :func:`check_deid_salt`); there is no default outside ``depsim demo``."""
    return check_deid_salt(os.environ.get(SALT_ENV))


def taxonomy_dir() -> Path:
    """The taxonomy folder: ``$DEPSIM_TAXONOMY_DIR`` or the project's ``taxonomy/``."""
    override = os.environ.get("DEPSIM_TAXONOMY_DIR")
    return Path(override).expanduser().resolve() if override else PROJECT_ROOT / "taxonomy"


def env_float(
    name: str, default: float | None = None, *, low: float = -math.inf, high: float = math.inf
) -> float | None:
    """A number from env var ``name`` (``default`` when unset), read at call time.

    A value that is not a number in ``[low, high]`` is an error naming the variable, never a
    silent fallback.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
    if not low <= value <= high:
        raise ValueError(f"{name}={raw!r} is outside [{low:g}, {high:g}]")
    return value


def env_threshold(name: str, default: float, *, low: float = 0.0, high: float = 1.0) -> float:
    """A check threshold from env var ``name`` (``default`` when unset): a mistyped threshold
    must not pass a check that should fail, so a bad value is an error (see :func:`env_float`).
    """
    value = env_float(name, default, low=low, high=high)
    assert value is not None
    return value


# ----------------------------------------------------------------------- partition window
START_DATE_ENV = "DEPSIM_START_DATE"
END_DATE_ENV = "DEPSIM_END_DATE"
PARTITION_DATE_ENVS = (START_DATE_ENV, END_DATE_ENV)
DEFAULT_START_DATE = "2025-01-01"
PARTITIONS_FILE = "partitions.yaml"


def partitions_file() -> Path:
    """The home's partition window, ``<home>/partitions.yaml`` (``depsim demo`` writes it)."""
    return depsim_home() / PARTITIONS_FILE


def _iso_day(value: object, where: str) -> str:
    text = str(value).strip()
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise ValueError(f"{where}={text!r} is not a date (YYYY-MM-DD)") from None


def partition_window() -> tuple[str, str | None]:
    """``(first day, last day or None)`` of the daily partitions, read when Dagster loads.

    From ``$DEPSIM_START_DATE`` / ``$DEPSIM_END_DATE`` when either is set; else from the
    home's ``partitions.yaml`` (``start_date``, ``end_date``, both optional) when it exists;
    else from 2025-01-01 with no last day (a new day's partition opens every day). A demo home
    ends on its last day, so its graph shows its own days, not two years of empty ones.
    A bad date or a window that ends before it starts is one-line error naming its source.
    """
    if any(os.environ.get(name, "").strip() for name in PARTITION_DATE_ENVS):
        start_raw = os.environ.get(START_DATE_ENV, "").strip() or DEFAULT_START_DATE
        end_raw = os.environ.get(END_DATE_ENV, "").strip() or None
        start_where, end_where = START_DATE_ENV, END_DATE_ENV
    else:
        path = partitions_file()
        settings: object = {}
        if path.exists():
            from depsim_assets import safe_yaml

            settings = safe_yaml.load_file(path) or {}
        if not isinstance(settings, dict):
            raise ValueError(f"{path}: expected start_date and end_date keys")
        unknown = sorted(set(map(str, settings)) - {"start_date", "end_date"})
        if unknown:
            raise ValueError(f"{path}: unknown key {unknown[0]!r} (start_date, end_date)")
        start_raw = settings.get("start_date") or DEFAULT_START_DATE
        end_raw = settings.get("end_date")
        start_where, end_where = f"{path}: start_date", f"{path}: end_date"
    start = _iso_day(start_raw, start_where)
    end = _iso_day(end_raw, end_where) if end_raw else None
    if end is not None and end < start:
        raise ValueError(f"{end_where}={end!r} is before the first day {start!r}")
    return start, end


def write_partition_window(start: str, end: str | None) -> Path:
    """Write the home's ``partitions.yaml`` (atomically) and return its path."""
    path = partitions_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# depsim: the days this home's daily partitions cover (read when Dagster loads;",
        "# $DEPSIM_START_DATE / $DEPSIM_END_DATE override it). Written by `depsim demo`:",
        "# remove end_date once this home receives new days of traffic.",
        f"start_date: '{_iso_day(start, 'start_date')}'",
    ]
    if end is not None:
        lines.append(f"end_date: '{_iso_day(end, 'end_date')}'")
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
