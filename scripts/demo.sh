#!/usr/bin/env bash
# One command for the demo: install into ./.venv, then `depsim demo` (extra args pass through).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/depsim demo "$@"
