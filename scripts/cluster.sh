#!/usr/bin/env bash
# One command for depsim past one host, on this machine: PostgreSQL (Dagster's run, event and
# schedule storage) + Redis (Celery's broker) + N dagster-celery workers, then the demo's runs
# with every step a Celery task; everything stopped on exit (docs/scale.md). Needs Debian's
# postgresql and redis-server packages. Extra args pass through (--workers, --home, --serve...).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m depsim_tests.cluster "$@"
