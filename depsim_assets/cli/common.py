"""What every command shares: one-line errors, exit codes and JSON-safe numbers."""

from __future__ import annotations

import errno
import math
import os
import sys
from pathlib import Path
from typing import Any

from depsim_assets import config

# Problems a user can fix: printed as one line, exit code 2, no traceback.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, RuntimeError)


def fail(message: str) -> int:
    """Print ``depsim: error: message`` (secrets scrubbed) and return exit code 2."""
    from depsim_assets.secrets import scrub

    # The last guard: whatever raised, no key reaches the terminal (or a CI log).
    print(f"depsim: error: {scrub(message)}", file=sys.stderr)
    return 2


def fail_env(message: str) -> int:
    """A failure of the machine, not of the input (disk full, read-only home): exit 1."""
    fail(message)
    return 1


def os_error_text(exc: OSError, where: Path | None = None) -> str:
    """One line for an OS error, naming the depsim home when that is what cannot be written.

    ``where`` is the place being written when the error does not name a file (a failed
    ``write`` does not).
    """
    home = config.depsim_home()
    place = str(exc.filename) if exc.filename else str(where or home)
    why = exc.strerror or type(exc).__name__
    # The Dagster folder and the warehouse live in the home unless moved (or linked) away.
    places = {str(home), str(config.dagster_home()), str(config.warehouse_path().parent)}
    in_home = any(place == p or place.startswith(p.rstrip(os.sep) + os.sep) for p in places)
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM) and in_home:
        return f"the depsim home {home} is read-only ({why}: {place}); set DEPSIM_HOME"
    if exc.errno in (errno.ENOTDIR, errno.EEXIST) and in_home:
        return f"the depsim home {home} is not a folder depsim can use ({why}: {place})"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk is full ({why}) writing {place}"
    if exc.errno == errno.EFBIG:
        return f"a file hit the file size limit ({why}) writing {place}"
    return f"{place}: {why}"


def clean(value: Any) -> Any:
    """A value JSON can carry: numpy scalars as Python ones, NaN and infinity as None."""
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    item = getattr(value, "item", None)
    if callable(item):  # numpy scalars
        return clean(item())
    return value


def fmt(value: Any, spec: str) -> str:
    """``value`` formatted by ``spec``, or ``-`` when there is none."""
    return "-" if value is None else format(value, spec)
