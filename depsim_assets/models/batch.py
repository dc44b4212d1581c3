"""Requests through the OpenAI Batch API: submit, persist, poll, collect, resume.

Pending requests become a JSONL file of chat requests (``custom_id`` = the request's cache
key, ``body`` = exactly what the online path sends), uploaded and submitted as one batch per
at most 50,000 lines. The batch id is written to ``model_batches`` *before* any polling, so
a run that is killed, or that stops waiting (``max_wait_s``), loses nothing: the next run
with the same pending requests finds the unfinished (or finished but not yet collected)
batch by the hash of its input and resumes polling it instead of paying for it again.

When a batch is done, its output and error files are read and every request gets a
:class:`BatchResult` by ``custom_id``: the response body, or an error with a class and
message; a request found in neither file is an error too, never dropped. What a result means
(a reply, a verdict) is the caller's business: :func:`depsim_assets.models.answer_all` turns
results into outcomes and writes them to the response cache as each batch is collected.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import openai
from dagster_duckdb import DuckDBResource

from depsim_assets.endpoints import (
    api_key_from_env,
    describe_error,
    describe_text,
    resolve_base_url,
)
from depsim_assets.warehouse import MODEL_BATCHES, ensure_tables, upsert_sql

CHAT_ENDPOINT = "/v1/chat/completions"
MAX_LINES = 50_000  # requests per batch on the OpenAI Batch API
MAX_BYTES = 190 * 1024 * 1024  # input file size, under the API's 200 MB
FINISHED = ("completed", "failed", "expired", "cancelled")
_POLL_FAILURES_TOLERATED = 10
# The exception class the openai client raises for an HTTP status, so a failed batch line
# reads like the same failure online.
_STATUS_ERRORS = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    409: "ConflictError",
    422: "UnprocessableEntityError",
    429: "RateLimitError",
}


class BatchError(RuntimeError):
    """A batch could not be submitted or followed (the endpoint refused or vanished)."""


class BatchPending(BatchError):
    """Stopped waiting for a batch that is still running; a rerun collects it."""


@dataclass(frozen=True)
class BatchSettings:
    """How to reach the Batch API of one endpoint and how long to wait for it."""

    base_url: str
    api_key_env: str | None = None
    timeout_s: float = 60.0
    # Retries of the client's own submit/poll/download requests (not of batch lines).
    max_retries: int = 2
    poll_s: float = 30.0
    # Stop waiting after this long (None: wait until the batch finishes); the batch runs on.
    max_wait_s: float | None = None
    # Written on the ledger row and the batch's metadata, for a person looking at either.
    partition_key: str = ""


@dataclass(frozen=True)
class BatchResult:
    """What came back for one line: a response body, or an error (``Class: message``)."""

    body: Any = None
    error: str | None = None


def error_text(cls: str, message: str) -> str:
    """A line's failure as online errors read (whole text, key-scrubbed)."""
    return describe_text(f"{cls}: {message}")


def result_from_line(line: dict[str, Any]) -> BatchResult:
    """The result of one line of a batch's output or error file."""
    response = line.get("response") if isinstance(line.get("response"), dict) else None
    status = response.get("status_code") if response else None
    if response is not None and status == 200:
        return BatchResult(body=response.get("body"))
    if response is not None and isinstance(status, int):
        cls = _STATUS_ERRORS.get(
            status, "InternalServerError" if status >= 500 else "APIStatusError"
        )
        return BatchResult(
            error=error_text(cls, f"Error code: {status} - {response.get('body')}")
        )
    error = line.get("error")
    if not isinstance(error, dict):
        error = {}
    return BatchResult(
        error=error_text(
            "BatchRequestError", f"{error.get('code') or 'unknown'}: {error.get('message') or ''}"
        )
    )


def parse_results(data: bytes) -> dict[str, BatchResult]:
    """Results by ``custom_id`` from an output or error file (unreadable lines skipped:
    their requests then have no result and become errors)."""
    out: dict[str, BatchResult] = {}
    for raw in data.splitlines():
        try:
            line = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(line, dict) and isinstance(line.get("custom_id"), str):
            out[line["custom_id"]] = result_from_line(line)
    return out


def build_input(pending: Sequence[tuple[str, dict[str, Any]]]) -> bytes:
    """The batch input file of (key, request body) pairs: one JSONL line per distinct key, in
    a canonical form (same pending requests, same bytes, same hash)."""
    lines: dict[str, bytes] = {}
    for key, body in pending:
        if key not in lines:
            line = {"custom_id": key, "method": "POST", "url": CHAT_ENDPOINT, "body": body}
            lines[key] = (
                json.dumps(line, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
                + b"\n"
            )
    return b"".join(lines.values())


def _chunks(data: bytes) -> list[bytes]:
    """Split an input file into files the Batch API accepts (lines and bytes per batch)."""
    out: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for line in data.splitlines(keepends=True):
        if current and (len(current) >= MAX_LINES or size + len(line) > MAX_BYTES):
            out.append(b"".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line)
    if current:
        out.append(b"".join(current))
    return out


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class _Ledger:
    """``model_batches`` rows: every write a short transaction of its own."""

    def __init__(self, warehouse: DuckDBResource) -> None:
        self.warehouse = warehouse

    def find_open(self, *, endpoint: str, model: str, input_hash: str) -> dict[str, Any] | None:
        with self.warehouse.get_connection() as conn:
            ensure_tables(conn)
            frame = conn.execute(
                "SELECT * FROM model_batches WHERE endpoint = ? AND model = ? AND input_hash = ?"
                " AND collected_at IS NULL AND status <> 'lost' ORDER BY created_at DESC LIMIT 1",
                [endpoint, model, input_hash],
            ).df()
        return None if frame.empty else {str(k): v for k, v in frame.iloc[0].to_dict().items()}

    def insert(self, row: dict[str, Any]) -> None:
        cols = MODEL_BATCHES.column_names
        values = [row.get(c) for c in cols]
        with self.warehouse.get_connection() as conn:
            ensure_tables(conn)
            conn.execute(
                upsert_sql(MODEL_BATCHES, f"VALUES ({', '.join('?' for _ in cols)})"), values
            )

    def update(self, batch_id: str, **fields: Any) -> None:
        fields["updated_at"] = _now()
        sets = ", ".join(f'"{k}" = ?' for k in fields)
        with self.warehouse.get_connection() as conn:
            conn.execute(
                f"UPDATE model_batches SET {sets} WHERE batch_id = ?", [*fields.values(), batch_id]
            )


class _Batches:
    """One endpoint's Batch API for one call of :func:`run_batches`."""

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        ledger: _Ledger,
        settings: BatchSettings,
        *,
        endpoint: str,
        model: str,
        log: Callable[[str], None],
    ) -> None:
        self.client, self.ledger, self.settings = client, ledger, settings
        self.endpoint, self.model, self.log = endpoint, model, log
        self.deadline = (
            time.monotonic() + settings.max_wait_s if settings.max_wait_s is not None else None
        )

    async def submit(self, data: bytes, input_hash: str) -> str:
        try:
            uploaded = await self.client.files.create(
                file=(f"depsim-{input_hash[:16]}.jsonl", data), purpose="batch"
            )
            batch = await self.client.batches.create(
                input_file_id=uploaded.id,
                endpoint=CHAT_ENDPOINT,
                completion_window="24h",
                metadata={
                    "depsim_input_hash": input_hash[:64],
                    "depsim_partition": self.settings.partition_key,
                },
            )
        except openai.OpenAIError as exc:
            # The whole reason, key-scrubbed: this message reaches the run log and the terminal.
            raise BatchError(
                f"submitting a batch to {self.endpoint}: {describe_error(exc)}"
            ) from None
        now, n_requests = _now(), data.count(b"\n")
        # Persisted before the first poll: from here on a restarted run resumes this batch.
        self.ledger.insert(
            {
                "batch_id": batch.id,
                "endpoint": self.endpoint,
                "model": self.model,
                "partition_key": self.settings.partition_key,
                "input_hash": input_hash,
                "n_requests": n_requests,
                "input_file_id": uploaded.id,
                "status": batch.status,
                "created_at": now,
                "updated_at": now,
            }
        )
        self.log(f"batch {batch.id}: submitted {n_requests} requests to {self.endpoint}")
        return batch.id

    async def wait(self, batch_id: str) -> Any:
        """Poll until the batch finishes; None if the endpoint no longer knows it."""
        last: tuple[Any, ...] | None = None
        failures = 0
        poll_s, deadline = self.settings.poll_s, self.deadline
        while True:
            try:
                batch = await self.client.batches.retrieve(batch_id)
                failures = 0
            except openai.NotFoundError:
                return None
            except (
                openai.APIConnectionError,
                openai.InternalServerError,
                openai.RateLimitError,
            ) as exc:
                failures += 1
                if failures > _POLL_FAILURES_TOLERATED:
                    raise BatchError(
                        f"batch {batch_id}: polling failed {failures} times in a row: "
                        f"{type(exc).__name__}"
                    ) from None
                batch = None
            if batch is not None:
                counts = batch.request_counts
                seen = (
                    batch.status,
                    counts.completed if counts else None,
                    counts.failed if counts else None,
                )
                if seen != last:
                    self.ledger.update(
                        batch_id,
                        status=batch.status,
                        output_file_id=batch.output_file_id,
                        error_file_id=batch.error_file_id,
                    )
                    done = f" {counts.completed}+{counts.failed}/{counts.total}" if counts else ""
                    self.log(f"batch {batch_id}: {batch.status}{done}")
                    last = seen
                if batch.status in FINISHED:
                    return batch
            if deadline is not None and time.monotonic() >= deadline:
                raise BatchPending(
                    f"batch {batch_id} is still {last[0] if last else 'unknown'} after the "
                    "configured batch_max_wait_s; it keeps running, and the next "
                    "materialization of this partition collects it"
                )
            await asyncio.sleep(
                poll_s if deadline is None else max(0.0, min(poll_s, deadline - time.monotonic()))
            )

    async def _download(self, file_id: str | None) -> bytes:
        return (await self.client.files.content(file_id)).content if file_id else b""

    async def collect(self, batch: Any, keys: list[str]) -> dict[str, BatchResult]:
        results = parse_results(await self._download(batch.error_file_id))
        results.update(parse_results(await self._download(batch.output_file_id)))
        if batch.status == "failed" and batch.errors and batch.errors.data:
            first = batch.errors.data[0]
            why = error_text("BatchFailed", f"{first.code}: {first.message} (line {first.line})")
        else:
            why = error_text(
                "BatchLineMissing",
                f"batch {batch.id} ({batch.status}) returned no result for this request",
            )
        return {key: results.get(key) or BatchResult(error=why) for key in keys}


async def run_batches(
    warehouse: DuckDBResource,
    pending: Sequence[tuple[str, dict[str, Any]]],
    *,
    settings: BatchSettings,
    endpoint: str,
    model: str,
    on_collected: Callable[[str, dict[str, BatchResult]], None],
    log: Callable[[str], None] = print,
) -> dict[str, BatchResult]:
    """Results of ``pending`` (request key, request body) by key, through the Batch API.

    Submits (or resumes) one batch per at most 50,000 requests and waits for them;
    ``on_collected(batch_id, results)`` sees each batch's results as soon as it is collected
    (to store them), before the batch is marked collected in ``model_batches``. Raises
    :class:`BatchPending` when ``settings.max_wait_s`` passes first, and :class:`BatchError`
    when the endpoint refuses a batch.
    """
    if not pending:
        return {}
    ledger = _Ledger(warehouse)
    client = openai.AsyncOpenAI(
        base_url=resolve_base_url(settings.base_url),
        api_key=api_key_from_env(settings.api_key_env),
        timeout=settings.timeout_s,
        max_retries=settings.max_retries,
    )
    out: dict[str, BatchResult] = {}
    async with client:
        api = _Batches(client, ledger, settings, endpoint=endpoint, model=model, log=log)
        jobs: list[tuple[str, list[str], bytes, str]] = []
        for data in _chunks(build_input(pending)):
            input_hash = hashlib.sha256(data).hexdigest()
            keys = [json.loads(line)["custom_id"] for line in data.splitlines()]
            found = ledger.find_open(endpoint=endpoint, model=model, input_hash=input_hash)
            if found is not None:
                log(
                    f"batch {found['batch_id']}: resuming ({found['status']}, submitted "
                    f"{found['created_at']})"
                )
                batch_id = str(found["batch_id"])
            else:
                batch_id = await api.submit(data, input_hash)
            jobs.append((batch_id, keys, data, input_hash))
        for batch_id, keys, data, input_hash in jobs:
            batch = await api.wait(batch_id)
            if batch is None:  # the endpoint forgot it (a restarted server): submit again
                ledger.update(batch_id, status="lost")
                log(f"batch {batch_id}: unknown to {endpoint}; submitting its requests again")
                batch_id = await api.submit(data, input_hash)
                batch = await api.wait(batch_id)
                if batch is None:
                    raise BatchError(f"batch {batch_id} vanished from {endpoint} twice")
            got = await api.collect(batch, keys)
            on_collected(batch_id, got)
            ledger.update(batch_id, collected_at=_now())
            out.update(got)
    return out
