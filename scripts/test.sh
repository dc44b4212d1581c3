#!/usr/bin/env bash
# One command for the tests: install into ./.venv, lint, then the whole suite (offline).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
