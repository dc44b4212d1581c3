"""Small typed resources: each owns one outside thing and says so."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import duckdb
import openai
from dagster_duckdb import DuckDBResource

from depsim_assets.calls import Budget
from depsim_assets.endpoints import async_client, display_endpoint
from depsim_assets.registry import Registry, load_registry
from depsim_assets.warehouse import LOCK_TIMEOUT_S, open_connection


class Warehouse(DuckDBResource):
    """Owns the DuckDB warehouse file; many processes may use it, one connection at a time.

    ``DuckDBResource.get_connection`` retries any ``IOException`` ten times on a fixed
    doubling schedule (about 100 s, no jitter) and leaves the connection open when the block
    raises. Under the multiprocess executor and parallel runs, every step is a process on
    this one file, so here: only the lock conflict is retried, with jittered backoff for up to
    ``lock_timeout_s`` and then a clear error, and the connection is closed (the lock
    released) however the block ends. Hold it for one read or one write transaction, never
    across a model call.
    """

    lock_timeout_s: float = LOCK_TIMEOUT_S

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:  # type: ignore[override]
        """A read-write connection for one block; waits while another process holds the file."""
        conn = open_connection(
            self.database,
            config={"custom_user_agent": "dagster", **self.connection_config},
            timeout_s=self.lock_timeout_s,
        )
        try:
            yield conn
        finally:
            conn.close()


class TrafficSource(dg.ConfigurableResource):
    """Owns the production log folder (JSONL by day) and the de-identification salt."""

    log_root: str
    deid_salt: str


class CandidateRegistry(dg.ConfigurableResource):
    """Owns ``candidates.yaml``: who the candidates are and how to reach them."""

    path: str

    def load(self) -> Registry:
        """Read and validate the registry file."""
        from pathlib import Path

        return load_registry(Path(self.path))


class JudgeEndpoint(dg.ConfigurableResource):
    """Owns the judge model: endpoint, model name, key env var, concurrency, flag threshold."""

    base_url: str = "sim"
    model: str = "sim-judge"
    api_key_env: str | None = None
    max_concurrency: int = 32
    timeout_s: float = 120.0
    max_retries: int = 4
    flag_threshold: int = 2
    # How the verdict's JSON shape is asked for: json_schema (strict), json_object (+ schema),
    # prompt (schema in the prompt only), or auto (strongest the server accepts, remembered).
    structured_output: str = "auto"
    # The judge model's context length in tokens (None: unknown, assume it is large).
    context_window: int | None = None
    # How categories are split into calls: all (one call), family, behaviour (one each), or
    # auto (the fewest calls that fit context_window).
    layout: str = "auto"
    # Cap on tokens the judge generates per call (None: the server's default).
    max_output_tokens: int | None = None

    def client(self) -> openai.AsyncOpenAI:
        """A fresh async client (one per run: clients bind to the event loop that uses them)."""
        return async_client(
            self.base_url,
            api_key_env=self.api_key_env,
            timeout_s=self.timeout_s,
            max_retries=0,  # the call engine retries (judge.max_retries), counting each attempt
            max_connections=self.max_concurrency,
        )

    def endpoint_label(self) -> str:
        """The endpoint as stored on grade rows (no credentials)."""
        return display_endpoint(self.base_url)


class RunBudget(dg.ConfigurableResource):
    """An optional spending limit per run, in USD, over every priced model call of the run.

    Each step starts from what the run's earlier steps spent (their ``cost_usd``
    materialization metadata), so a run of replay, grading and rates stops as one. When it is
    reached, requests not yet started end as ``not_attempted``; calls in flight finish.
    """

    max_usd: float | None = None

    def for_run(self, context: dg.AssetExecutionContext) -> Budget:
        """A :class:`Budget` holding what this run has spent so far."""
        spent = 0.0
        if self.max_usd is not None:
            for record in context.instance.all_logs(
                context.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
            ):
                materialization = record.asset_materialization
                value = materialization.metadata.get("cost_usd") if materialization else None
                if value is not None:
                    spent += float(value.value)
        return Budget(self.max_usd, spent_usd=spent)
