"""Where depsim keeps its files.

Everything depsim writes lives under one home folder, ``$DEPSIM_HOME`` (default ``./.depsim``):
the DuckDB warehouse, the production log folder, the candidate registry, the Dagster instance
and the reports. Paths are resolved when asked for, so a test or the CLI can point
``DEPSIM_HOME`` somewhere else before anything is read.
"""

from __future__ import annotations

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
