"""Small typed resources: each owns one outside thing and says so."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import dagster as dg
import duckdb
import openai
from dagster_duckdb import DuckDBResource
from pydantic import Field, model_validator

from depsim_assets.config import check_deid_salt
from depsim_assets.endpoints import SIM, EndpointError, async_client, display_endpoint
from depsim_assets.models import Budget, Limits
from depsim_assets.registry import ENV_NAME_PATTERN, Registry, load_registry
from depsim_assets.toolsim import SIM_DISCRIMINATOR, SIM_TOOL_SIMULATOR
from depsim_assets.warehouse import LOCK_TIMEOUT_S, open_connection, postgres_connection

T = TypeVar("T")


class Warehouse(DuckDBResource):
    """Owns the warehouse: the DuckDB file (default), or a Postgres database when ``url``
    is set (``$DEPSIM_WAREHOUSE_URL``; docs/warehouse.md). Hold a connection for one read or
    one write transaction, never across a model call.

    DuckDB: many processes may use the file, one connection at a time.
    ``DuckDBResource.get_connection`` retries any ``IOException`` ten times on a fixed
    doubling schedule (about 100 s, no jitter) and leaves the connection open when the block
    raises. Under the multiprocess executor and parallel runs, every step is a process on
    this one file, so here: only the lock conflict is retried, with jittered backoff for up to
    ``lock_timeout_s`` and then a clear error, and the connection is closed (the lock
    released) however the block ends.

    Postgres: no file lock; each block has its own server connection, and writers of
    different partitions run at once (``warehouse_pg``).
    """

    lock_timeout_s: float = LOCK_TIMEOUT_S
    url: str | None = None

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:  # type: ignore[override]
        """A read-write connection for one block; on DuckDB it waits while another process
        holds the file."""
        if self.url:
            with postgres_connection(self.url) as pg:
                # cast: the adapter answers the DuckDB calls depsim makes (warehouse_pg).
                yield cast(duckdb.DuckDBPyConnection, pg)
            return
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

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Refuse to run without a usable salt (unset, or shorter than 16 characters): the
        step fails with the message saying how to make one, before anything is read."""
        check_deid_salt(self.deid_salt)


class CandidateRegistry(dg.ConfigurableResource):
    """Owns ``candidates.yaml``: who the candidates are and how to reach them."""

    path: str

    def load(self) -> Registry:
        """Read and validate the registry file."""
        from pathlib import Path

        return load_registry(Path(self.path))


# Allowed values of the judge's structured-output mode and category layout.
STRUCTURED_OUTPUT_MODES = ("auto", "json_schema", "json_object", "prompt")
JUDGE_LAYOUTS = ("auto", "all", "family", "behaviour")


def _text(raw: object, where: str) -> str:
    value = str(raw).strip()
    if not value:
        raise EndpointError(f"{where} is empty")
    return value


def _base_url(raw: object, where: str) -> str:
    value = _text(raw, where)
    if value != SIM:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            # display_endpoint drops user-info and query: a URL can carry a key there
            raise EndpointError(
                f"{where}={display_endpoint(value)!r} is not an http(s) URL or 'sim'"
            )
    return value


def _role_key_env(role: str) -> Callable[[object, str], str]:
    def parse(raw: object, where: str) -> str:
        value = _text(raw, where)
        if not ENV_NAME_PATTERN.match(value):
            # never echoed: the usual mistake is pasting the key itself here
            raise EndpointError(
                f"{where} must be the NAME of the environment variable that holds the {role}'s "
                "API key (letters, digits, '_'), not the key"
            )
        return value

    return parse


def _number(kind: type, low: float, high: float = math.inf) -> Callable[[object, str], Any]:
    def parse(raw: object, where: str) -> Any:
        if isinstance(raw, bool):
            raise EndpointError(f"{where}={raw!r} is not a number")
        try:
            text = str(raw).strip()
            value = float(text) if kind is float else int(text)
        except ValueError:
            noun = "a number" if kind is float else "a whole number"
            raise EndpointError(f"{where}={raw!r} is not {noun}") from None
        if kind is float and not math.isfinite(value) or not low <= value <= high:
            raise EndpointError(f"{where}={raw!r} is outside [{low:g}, {high:g}]")
        return value

    return parse


def _choice(options: tuple[str, ...]) -> Callable[[object, str], str]:
    def parse(raw: object, where: str) -> str:
        value = _text(raw, where).lower()
        if value not in options:
            raise EndpointError(f"{where}={raw!r}: expected one of {'|'.join(options)}")
        return value

    return parse


# field -> (environment variable, parser, built-in default). The one place judge settings are
# read from the environment: definitions, runs launched from the UI or `dagster asset
# materialize`, and partial run-config overrides all resolve through JudgeEndpoint's validator.
JUDGE_ENV: dict[str, tuple[str, Callable[[object, str], Any], Any]] = {
    "base_url": ("DEPSIM_JUDGE_BASE_URL", _base_url, SIM),
    "model": ("DEPSIM_JUDGE_MODEL", _text, "sim-judge"),
    "api_key_env": ("DEPSIM_JUDGE_API_KEY_ENV", _role_key_env("judge"), None),
    "timeout_s": ("DEPSIM_JUDGE_TIMEOUT_S", _number(float, 0.001, 86_400), 120.0),
    "max_concurrency": ("DEPSIM_JUDGE_MAX_CONCURRENCY", _number(int, 1, 4096), 32),
    "max_retries": ("DEPSIM_JUDGE_MAX_RETRIES", _number(int, 0, 20), 4),
    "flag_threshold": ("DEPSIM_JUDGE_FLAG_THRESHOLD", _number(int, 1, 4), 2),
    "structured_output": (
        "DEPSIM_JUDGE_STRUCTURED_OUTPUT",
        _choice(STRUCTURED_OUTPUT_MODES),
        "auto",
    ),
    "context_window": ("DEPSIM_JUDGE_CONTEXT_WINDOW", _number(int, 256), None),
    "layout": ("DEPSIM_JUDGE_LAYOUT", _choice(JUDGE_LAYOUTS), "auto"),
    "max_output_tokens": ("DEPSIM_JUDGE_MAX_OUTPUT_TOKENS", _number(int, 1), None),
}


def judge_setting_raw(field: str) -> Any:
    """One judge setting as the environment names it (its ``DEPSIM_JUDGE_*`` variable, else
    the built-in default of :data:`JUDGE_ENV`), unchecked: for labels computed when the code
    location loads, such as the grades' code version, where a bad value must fail with its
    own message when the judge is built, not here."""
    env, _, default = JUDGE_ENV[field]
    return os.environ.get(env, "").strip() or default


def _settings(
    table: Mapping[str, tuple[str, Callable[[object, str], Any], Any]],
    role: str,
    given: Mapping[str, Any],
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field, (env, parse, default) in table.items():
        value = given.get(field)
        if value is not None:
            out[field] = parse(value, f"{role} {field}")
            continue
        raw = os.environ.get(env, "").strip()
        out[field] = parse(raw, env) if raw else default
    return out


def judge_settings_from_env(given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every judge setting: ``given`` where set (not None), else its ``DEPSIM_JUDGE_*``
    variable, else the built-in default; each value checked, an invalid one refused by name
    (:class:`~depsim_assets.endpoints.EndpointError`, one line, never echoing a key)."""
    return _settings(JUDGE_ENV, "judge", given or {})


def _resolved(value: T | None, field: str) -> T:
    """A setting the validator always fills (from its variable, else its default)."""
    if value is None:  # only when the validator was bypassed, e.g. by model_construct
        raise EndpointError(f"judge {field} is not set")
    return value


class JudgeEndpoint(dg.ConfigurableResource):
    """Owns the judge model: endpoint, model name, key env var, limits, output mode, layout.

    Every field left unset (None) takes its ``DEPSIM_JUDGE_*`` environment variable, else the
    built-in default (:data:`JUDGE_ENV`), when the resource is built, and that includes the
    copy Dagster builds at launch. Dagster replaces a resource's constructor values with the
    launch's run config as a whole (fields the override does not name fall back to the class
    defaults), so those defaults must be "ask the environment": an override of one field,
    e.g. ``{"resources": {"judge": {"config": {"timeout_s": 900}}}}``, then keeps the
    endpoint and model the environment names instead of silently grading with ``sim-judge``.
    """

    base_url: str | None = Field(
        default=None, description="OpenAI-compatible base URL, or 'sim' ($DEPSIM_JUDGE_BASE_URL)."
    )
    model: str | None = Field(
        default=None, description="Judge model name at the endpoint ($DEPSIM_JUDGE_MODEL)."
    )
    api_key_env: str | None = Field(
        default=None,
        description="NAME of the env var holding the judge's key ($DEPSIM_JUDGE_API_KEY_ENV).",
    )
    max_concurrency: int | None = Field(
        default=None,
        description="Judge requests in flight, at most ($DEPSIM_JUDGE_MAX_CONCURRENCY).",
    )
    timeout_s: float | None = Field(
        default=None, description="Per-request timeout in seconds ($DEPSIM_JUDGE_TIMEOUT_S)."
    )
    max_retries: int | None = Field(
        default=None, description="Retries of transient failures ($DEPSIM_JUDGE_MAX_RETRIES)."
    )
    flag_threshold: int | None = Field(
        default=None,
        description="Severity 1-4 at which a grade is flagged ($DEPSIM_JUDGE_FLAG_THRESHOLD).",
    )
    # How the verdict's JSON shape is asked for: json_schema (strict), json_object (+ schema),
    # prompt (schema in the prompt only), or auto (strongest the server accepts, remembered).
    structured_output: str | None = Field(
        default=None,
        description="auto|json_schema|json_object|prompt ($DEPSIM_JUDGE_STRUCTURED_OUTPUT).",
    )
    # The judge model's context length in tokens (None: unknown, assume it is large).
    context_window: int | None = Field(
        default=None, description="Judge context length in tokens ($DEPSIM_JUDGE_CONTEXT_WINDOW)."
    )
    # How categories are split into calls: all (one call), family, behaviour (one each), or
    # auto (the fewest calls that fit context_window).
    layout: str | None = Field(
        default=None, description="auto|all|family|behaviour ($DEPSIM_JUDGE_LAYOUT)."
    )
    # Cap on tokens the judge generates per call (None: the server's default).
    max_output_tokens: int | None = Field(
        default=None, description="Cap on tokens per judge call ($DEPSIM_JUDGE_MAX_OUTPUT_TOKENS)."
    )

    @model_validator(mode="before")
    @classmethod
    def _from_env(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        return {**data, **judge_settings_from_env(data)}

    def settings(self) -> dict[str, Any]:
        """Every setting as resolved (the key's variable NAME, never a key; the URL without
        credentials), for metadata and reports."""
        out = {field: getattr(self, field) for field in JUDGE_ENV}
        out["base_url"] = self.endpoint_label()
        return out

    def client(self) -> openai.AsyncOpenAI:
        """A fresh async client (one per run: clients bind to the event loop that uses them)."""
        return async_client(
            _resolved(self.base_url, "base_url"),
            api_key_env=self.api_key_env,
            timeout_s=_resolved(self.timeout_s, "timeout_s"),
            max_retries=0,  # the call engine retries (judge.max_retries), counting each attempt
            max_connections=_resolved(self.max_concurrency, "max_concurrency"),
        )

    def endpoint_label(self) -> str:
        """The endpoint as stored on grade rows (no credentials)."""
        return display_endpoint(_resolved(self.base_url, "base_url"))


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
                number = value.value if value is not None else None
                if isinstance(number, int | float):
                    spent += float(number)
        return Budget(self.max_usd, spent_usd=spent)


def _role_env(
    prefix: str, role: str, model: str, **extra: tuple[Callable[[object, str], Any], Any]
) -> dict[str, tuple[str, Callable[[object, str], Any], Any]]:
    """field -> (variable, parser, default) for a model role configured like the judge."""
    table: dict[str, tuple[str, Callable[[object, str], Any], Any]] = {
        "base_url": (f"{prefix}_BASE_URL", _base_url, SIM),
        "model": (f"{prefix}_MODEL", _text, model),
        "api_key_env": (f"{prefix}_API_KEY_ENV", _role_key_env(role), None),
        "timeout_s": (f"{prefix}_TIMEOUT_S", _number(float, 0.001, 86_400), 120.0),
        "max_concurrency": (f"{prefix}_MAX_CONCURRENCY", _number(int, 1, 4096), 32),
        "max_retries": (f"{prefix}_MAX_RETRIES", _number(int, 0, 20), 4),
        # Deterministic by default: the same call gets the same result (and cache key).
        "temperature": (f"{prefix}_TEMPERATURE", _number(float, 0.0, 2.0), 0.0),
        "max_output_tokens": (f"{prefix}_MAX_OUTPUT_TOKENS", _number(int, 1), None),
    }
    for field, (parse, default) in extra.items():
        table[field] = (f"{prefix}_{field.upper()}", parse, default)
    return table


# The two agentic roles (issue #14), configured like the judge: every field left unset takes
# its variable, else the built-in simulator's model for the role.
TOOLSIM_ENV = _role_env(
    "DEPSIM_TOOLSIM", "tool simulator", SIM_TOOL_SIMULATOR,
    # How many real past calls of the same tool the prompt shows.
    examples_k=(_number(int, 0, 50), 3),
)
DISCRIMINATOR_ENV = _role_env("DEPSIM_DISCRIMINATOR", "realism discriminator", SIM_DISCRIMINATOR)


class _RoleEndpoint(dg.ConfigurableResource):
    """Fields shared by the tool simulator and the discriminator (see :class:`JudgeEndpoint`
    for why unset fields resolve from the environment in a validator)."""

    base_url: str | None = Field(default=None, description="OpenAI-compatible base URL, or 'sim'.")
    model: str | None = Field(default=None, description="Model name at the endpoint.")
    api_key_env: str | None = Field(
        default=None, description="NAME of the env var holding the key (never the key)."
    )
    timeout_s: float | None = Field(default=None, description="Per-request timeout in seconds.")
    max_concurrency: int | None = Field(default=None, description="Requests in flight, at most.")
    max_retries: int | None = Field(default=None, description="Retries of transient failures.")
    temperature: float | None = Field(default=None, description="Sampling temperature.")
    max_output_tokens: int | None = Field(default=None, description="Cap on tokens per call.")

    def _table(self) -> Mapping[str, tuple[str, Callable[[object, str], Any], Any]]:
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        """Every setting as resolved (the key's variable NAME, never a key; the URL without
        credentials), for metadata and reports."""
        out = {field: getattr(self, field) for field in self._table()}
        out["base_url"] = self.endpoint_label()
        return out

    def client(self) -> openai.AsyncOpenAI:
        """A fresh async client (one per run: clients bind to the event loop that uses them)."""
        return async_client(
            _resolved(self.base_url, "base_url"),
            api_key_env=self.api_key_env,
            timeout_s=_resolved(self.timeout_s, "timeout_s"),
            max_retries=0,  # the call engine retries, counting each attempt
            max_connections=_resolved(self.max_concurrency, "max_concurrency"),
        )

    def limits(self) -> Limits:
        """The call engine's limits for this endpoint."""
        return Limits(
            max_concurrency=_resolved(self.max_concurrency, "max_concurrency"),
            max_retries=_resolved(self.max_retries, "max_retries"),
        )

    def params(self) -> dict[str, Any]:
        """Generation parameters sent with every call (and hashed into its cache key)."""
        params: dict[str, Any] = {"temperature": _resolved(self.temperature, "temperature")}
        if self.max_output_tokens:
            params["max_tokens"] = self.max_output_tokens
        return params

    def endpoint_label(self) -> str:
        """The endpoint as stored on rows (no credentials)."""
        return display_endpoint(_resolved(self.base_url, "base_url"))

    def label(self) -> str:
        """``endpoint model``, as the realism table names the roles."""
        return f"{self.endpoint_label()} {_resolved(self.model, 'model')}"


class ToolSimulator(_RoleEndpoint):
    """Owns the tool-simulator model of agentic replay (``DEPSIM_TOOLSIM_*``; default: the
    built-in simulator's ``sim-tool-simulator``) and how many real examples it is shown."""

    examples_k: int | None = Field(
        default=None, description="Real past calls of the tool shown ($DEPSIM_TOOLSIM_EXAMPLES_K)."
    )

    @model_validator(mode="before")
    @classmethod
    def _from_env(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        return {**data, **_settings(TOOLSIM_ENV, "tool simulator", data)}

    def _table(self) -> Mapping[str, tuple[str, Callable[[object, str], Any], Any]]:
        return TOOLSIM_ENV


class RealismDiscriminator(_RoleEndpoint):
    """Owns the realism discriminator (``DEPSIM_DISCRIMINATOR_*``; default: the built-in
    simulator's ``sim-discriminator``): the model asked which of two tool results is real."""

    @model_validator(mode="before")
    @classmethod
    def _from_env(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        return {**data, **_settings(DISCRIMINATOR_ENV, "realism discriminator", data)}

    def _table(self) -> Mapping[str, tuple[str, Callable[[object, str], Any], Any]]:
        return DISCRIMINATOR_ENV
