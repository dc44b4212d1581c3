#!/usr/bin/env bash
# One command for the checks: install into ./.venv from the lock, lint, type-check, check the
# import contract, then pytest with the given arguments (offline). No arguments: the whole
# suite; `-m "not slow"`: the fast tier (docs/testing.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/ruff check .
# pyright (basic, [tool.pyright] in pyproject.toml) runs on the Node.js of its `nodejs` extra;
# the warning check would ask the npm registry for the newest pyright on every run.
PYRIGHT_PYTHON_IGNORE_WARNINGS=1 .venv/bin/pyright
# The stage boundaries (.importlinter): a stage never imports another stage.
.venv/bin/lint-imports --no-logo
exec .venv/bin/python -m pytest "$@"
