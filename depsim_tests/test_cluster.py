"""The same graph past one host: Dagster's instance in PostgreSQL, steps on Celery workers.

A real PostgreSQL and Redis (``depsim_tests.services``), two ``dagster-celery`` worker
processes standing in for two hosts, and the Dagster daemon executing a ``depsim`` backfill
(2 days x 2 candidates, traffic included) with ``DEPSIM_EXECUTOR=celery`` and the warehouse in
the same PostgreSQL (``DEPSIM_WAREHOUSE_URL``; separate hosts share no DuckDB file): every
partition materializes, steps ran on both workers (the worker name dagster-celery records on
each step), the runs and their events are rows in PostgreSQL, and so is every partition's
warehouse data; no DuckDB warehouse file was made.
"""

from __future__ import annotations

import dagster as dg
import psycopg2
import pytest

from depsim_assets import backfills, config, runs, warehouse
from depsim_assets.partitions import CANDIDATE_ASSETS, TRAFFIC_ASSETS
from depsim_assets.registry import Registry, save_registry
from depsim_demo import registry as demo
from depsim_demo.synth import write_demo_log
from depsim_tests.cluster import running_cluster, worker_of_steps

pytestmark = pytest.mark.e2e

PER_DAY = 30
DAYS = ["2026-09-01", "2026-09-02"]
CANDIDATES = ["sim-production", "sim-candidate-regressed"]


@pytest.fixture(autouse=True)
def small_days(monkeypatch):
    """Tiny days keep the test quick; the minimum-sample check would block them."""
    monkeypatch.setenv("DEPSIM_MIN_SAMPLE", "10")


def test_backfill_on_postgres_and_two_celery_workers(depsim_home, monkeypatch):
    write_demo_log(config.log_root(), DAYS, per_day=PER_DAY, seed=11)
    save_registry(
        Registry(
            baseline="sim-production",
            candidates=[c for c in demo.SIM_CANDIDATES if c.name in CANDIDATES],
        ),
        config.registry_path(),
    )
    with running_cluster(depsim_home, workers=2, daemon=True, pg_warehouse=True) as cluster:
        with cluster.instance() as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
            runs.ensure_candidate_partitions(instance, CANDIDATES)
            backfill_id = backfills.submit_backfill(instance, DAYS, CANDIDATES, traffic=True)
            final = backfills.wait_for_backfill(instance, backfill_id, timeout_s=600, poll_s=2)
            logs = "\n".join(p.read_text(errors="replace")[-2000:] for p in cluster.logs)
            expected = len(DAYS) * len(TRAFFIC_ASSETS) + len(DAYS) * len(CANDIDATES) * len(
                CANDIDATE_ASSETS
            )
            assert final.status == "COMPLETED_SUCCESS", (final, logs)
            assert final.materialized == final.target == expected, final
            assert final.runs == {"SUCCESS": len(DAYS) + len(DAYS) * len(CANDIDATES)}, final

            records = instance.get_run_records(
                dg.RunsFilter(tags={"dagster/backfill": backfill_id})
            )
            run_ids = [r.dagster_run.run_id for r in records]
            workers = worker_of_steps(instance, run_ids)
            succeeded = {
                f"{run_id}:{entry.dagster_event.step_key}"
                for run_id in run_ids
                for entry in instance.all_logs(
                    run_id, of_type=dg.DagsterEventType.STEP_SUCCESS
                )
                if entry.dagster_event is not None
            }
        # Every step that succeeded ran in a Celery worker, and both workers took steps.
        assert succeeded and succeeded <= set(workers), succeeded - set(workers)
        by_worker = {name.split("@", 1)[0] for name in workers.values()}
        assert by_worker == {"depsim-w1", "depsim-w2"}, workers

        # The run storage is PostgreSQL: the backfill's runs and their events are its rows.
        with psycopg2.connect(cluster.postgres.url) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM runs WHERE run_id = ANY(%s)", (run_ids,))
            assert cur.fetchone() == (len(run_ids),)
            cur.execute(
                "SELECT count(*) FROM event_logs WHERE run_id = ANY(%s)"
                " AND dagster_event_type = 'STEP_SUCCESS'",
                (run_ids,),
            )
            assert cur.fetchone() == (len(succeeded),)
            cur.execute("SELECT count(*) FROM bulk_actions WHERE key = %s", (backfill_id,))
            assert cur.fetchone() == (1,)

        # And the warehouse, in PostgreSQL, holds every partition's rows.
        monkeypatch.setenv(warehouse.URL_ENV, cluster.env[warehouse.URL_ENV])
        assert "depsim_warehouse" in warehouse.location()
        with warehouse.configured(read_only=True) as conn:
            for day in DAYS:
                prefixes = conn.execute(
                    "SELECT count(*) FROM conversation_prefixes WHERE traffic_date = ?", [day]
                ).fetchone()[0]
                assert prefixes >= PER_DAY * 0.6, (day, prefixes)
                for cand in CANDIDATES:
                    keys = [cand, day]
                    completions = conn.execute(
                        "SELECT count(*) FROM candidate_completions"
                        " WHERE candidate = ? AND traffic_date = ? AND status = 'ok'",
                        keys,
                    ).fetchone()[0]
                    grades = conn.execute(
                        "SELECT count(*) FROM judge_grades"
                        " WHERE candidate = ? AND traffic_date = ?",
                        keys,
                    ).fetchone()[0]
                    rates = conn.execute(
                        "SELECT count(*) FROM behavior_rates"
                        " WHERE candidate = ? AND traffic_date = ?",
                        keys,
                    ).fetchone()[0]
                    counts = (completions, grades, rates)
                    assert counts == (prefixes, prefixes * 20, 20), (cand, day)
    assert not config.warehouse_path().exists()  # nothing went to a DuckDB file
