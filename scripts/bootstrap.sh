#!/usr/bin/env bash
# Create ./.venv (if needed) and install the pinned dev environment into it: every package at
# the version and hashes of requirements.lock, then depsim itself (editable, no dependencies
# of its own: the lock holds them all). Idempotent. How to update the lock: docs/testing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# Reinstall only when the lock or pyproject.toml changed since the last successful install.
stamp=.venv/.depsim-installed
if [ ! -f "$stamp" ] || [ requirements.lock -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  # --no-deps: the lock already lists every package (pip would otherwise ask a pin for each
  # "name[extra]" requirement); pip check below proves nothing is missing.
  # pip's output (warnings about this machine's index settings, setuptools' note on editable
  # installs) is shown only when an install fails.
  log="$(mktemp)"
  if ! { .venv/bin/python -m pip install --quiet --no-deps --require-hashes -r requirements.lock &&
    .venv/bin/python -m pip install --quiet --no-deps -e .; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "scripts/bootstrap.sh: error: pip could not install requirements.lock (output above)" >&2
    exit 1
  fi
  rm -f "$log"
  # A dependency added to pyproject.toml but not to the lock is missing now: say so.
  if ! problems="$(.venv/bin/python -m pip check 2>&1)"; then
    echo "$problems" >&2
    echo "scripts/bootstrap.sh: error: requirements.lock does not satisfy pyproject.toml;" \
      "regenerate it (docs/testing.md, 'Updating the lockfile')" >&2
    exit 1
  fi
  touch "$stamp"
fi
